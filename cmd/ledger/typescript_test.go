package main_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// contractDir holds the Node.js side of the description's checks: the
// linter's configuration, the pinned tools (package-lock.json) and the
// TypeScript program a generated client is compiled with.
const contractDir = "../../contract"

// TestGeneratedClient uses the served description as a new user would:
// Redocly CLI lints it (recommended-strict), openapi-typescript generates
// a client from it, tsc --strict compiles a program that creates, lists,
// trashes, restores and imports contacts with that client, and the program
// runs against this ledger, whose traffic is checked as every end-to-end
// test's is. It needs Node.js: skipped without it, failed under CI=true.
func TestGeneratedClient(t *testing.T) {
	node := requireNode(t)
	npmCI(t, node)
	l := start(t, "sqlite")
	r := l.do("", "GET", "/openapi.json", nil)
	want(t, r, 200, "")
	gen := filepath.Join(contractDir, "generated")
	if err := os.MkdirAll(gen, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(gen, "openapi.json"), r.Raw, 0o644); err != nil {
		t.Fatal(err)
	}
	bin := func(name string) string { return filepath.Join("node_modules", ".bin", name) }
	runNode(t, "the description does not lint clean", nil,
		bin("redocly"), "lint", "--config", "redocly-lint.yaml", "--format", "stylish", "generated/openapi.json")
	runNode(t, "openapi-typescript cannot generate a client from the description", nil,
		bin("openapi-typescript"), "generated/openapi.json", "-o", "generated/api.ts")
	runNode(t, "the generated client and the program do not compile under tsc --strict", nil,
		bin("tsc"), "-p", "tsconfig.json")
	out := runNode(t, "the program failed against the ledger", []string{"LEDGER_URL=" + l.url(), "LEDGER_TOKEN=" + l.admin},
		node, "generated/out/client.js")
	if !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("the program said %q, want ok", out)
	}
}

// requireNode returns the path of node (18.17 or newer) and checks npm is
// there too; without them the test is skipped, or fails under CI=true.
func requireNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		_, err = exec.LookPath("npm")
	}
	var version string
	if err == nil {
		var b []byte
		b, err = exec.Command(node, "--version").Output()
		version = strings.TrimSpace(string(b))
	}
	if err == nil {
		major, minor, _ := strings.Cut(strings.TrimPrefix(version, "v"), ".")
		maj, _ := strconv.Atoi(major)
		min, _ := strconv.Atoi(strings.Split(minor, ".")[0])
		if maj < 18 || (maj == 18 && min < 17) {
			err = exec.ErrNotFound
		}
	}
	if err != nil {
		msg := "Node.js 18.17 or newer and npm are needed to check the description with a generated client (found " + strconv.Quote(version) +
			"); install them (apt-get install nodejs npm; make test does so as root)"
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return node
}

// npmCI installs the pinned tools of contract/package-lock.json when
// node_modules is missing or older than the lockfile.
func npmCI(t *testing.T, node string) {
	t.Helper()
	lock, err := os.Stat(filepath.Join(contractDir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	installed, err := os.Stat(filepath.Join(contractDir, "node_modules", ".package-lock.json"))
	if err == nil && !installed.ModTime().Before(lock.ModTime()) {
		return
	}
	runNode(t, "npm ci failed", nil, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
}

// runNode runs a command in contractDir and returns its output, failing
// the test with the output and what it means when the command fails.
func runNode(t *testing.T, failure string, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = contractDir
	cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true", "NO_COLOR=1")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s (%s %s: %v):\n%s", failure, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}
