package main_test

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	main "github.com/contactledger/ledger/cmd/ledger"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// run runs the ledger command line against a ledger's stores.
func (l *ledgerUnderTest) run(args ...string) (string, string, error) {
	l.t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := main.NewRootCommand(&stdout, &stderr)
	cmd.SetArgs(append(l.cli(args...), "--log-level", "error"))
	err := cmd.ExecuteContext(l.t.Context())
	return stdout.String(), stderr.String(), err
}

func TestCLI(t *testing.T) { eachStore(t, testCLI) }

func testCLI(t *testing.T, store string) {
	l := start(t, store)
	id := l.create(map[string]any{"name": "Carl Replay", "email": "carl@example.com"})
	want(t, l.as("POST", "/v1/contacts/"+id+"/trash", nil), 200, "")

	out, _, err := l.run("replay", id)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "ContactCreated") || !strings.Contains(out, "ContactTrashed") || !strings.Contains(out, "carl@example.com") {
		t.Fatalf("replay table:\n%s", out)
	}
	out, _, err = l.run("replay", id, "--json")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("replay --json printed %d lines, want 2", len(lines))
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &ev); err != nil || ev["type"] != "ContactTrashed" {
		t.Fatalf("replay --json: %s (%v)", lines[1], err)
	}
	want(t, l.as("POST", "/v1/contacts/"+id+"/purge", nil), 200, "")
	out, _, err = l.run("replay", id)
	if err != nil || !strings.Contains(out, "[shredded]") || strings.Contains(out, "carl@example.com") {
		t.Fatalf("replay after purge (%v):\n%s", err, out)
	}
	if _, _, err := l.run("replay", "not-an-id"); err == nil {
		t.Fatal("replay of a malformed id succeeded")
	}
	if _, _, err := l.run("replay", id, "--workspace", "elsewhere"); err == nil {
		t.Fatal("replay found a contact in another workspace")
	}

	if _, _, err := l.run("workspaces", "create", "acme"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.run("workspaces", "create", "Not Valid"); err == nil {
		t.Fatal("an invalid workspace name was accepted")
	}
	token, _, err := l.run("tokens", "create", "--workspace", "acme", "--role", "auditor")
	if err != nil {
		t.Fatal(err)
	}
	token = strings.TrimSpace(token)
	r := l.do(token, "GET", "/v1/contacts?view=trash", nil)
	want(t, r, 200, "")
	if len(r.items()) != 0 {
		t.Fatalf("a token of acme sees the default workspace's contacts: %s", r.Raw)
	}
	want(t, l.do(token, "GET", "/v1/contacts/"+id, nil), 404, "not-found")
	want(t, l.do(token, "POST", "/v1/contacts", map[string]any{"name": "x"}), 403, "role-not-allowed")
	if _, _, err := l.run("tokens", "create", "--workspace", "acme", "--role", "root"); err == nil {
		t.Fatal("an unknown role was accepted")
	}
	tokenID := "tok_" + strings.Split(strings.TrimPrefix(token, "lgr_"), "_")[0]
	if _, _, err := l.run("tokens", "revoke", tokenID); err != nil {
		t.Fatal(err)
	}
	// A revocation by another process reaches the server within the time
	// it keeps a token it has read (2 s): wait for it, no longer.
	waitFor(t, 3*time.Second, "the revocation to reach the server", func() bool {
		return l.do(token, "GET", "/v1/contacts", nil).Status == 401
	})
	want(t, l.do(token, "GET", "/v1/contacts", nil), 401, "unauthorized")
	if out, _, err := l.run("version"); err != nil || !strings.HasPrefix(out, "ledger ") {
		t.Fatalf("version: %q %v", out, err)
	}
}

// TestTokenCommands lists tokens without their secrets, and revokes one by
// its leaked secret; a secret that is not the token's revokes nothing.
func TestTokenCommands(t *testing.T) { eachStore(t, testTokenCommands) }

func testTokenCommands(t *testing.T, store string) {
	l := start(t, store)
	if _, _, err := l.run("workspaces", "create", "acme"); err != nil {
		t.Fatal(err)
	}
	secret, _, err := l.run("tokens", "create", "--workspace", "acme", "--role", "admin", "--label", "ci robot")
	if err != nil {
		t.Fatal(err)
	}
	secret = strings.TrimSpace(secret)
	// lgr_<26-character id>_<secret>; the secret's base64url may hold '_' too.
	id, secretPart := "tok_"+secret[4:30], secret[31:]

	out, _, err := l.run("tokens", "list")
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "ci robot") || strings.Count(out, "\n") != 3 || strings.Contains(out, secretPart) {
		t.Fatalf("tokens list (%v), want a header and both workspaces' tokens, no secret:\n%s", err, out)
	}
	out, _, err = l.run("tokens", "list", "--workspace", "acme", "--json")
	var listed map[string]any
	if err != nil || json.Unmarshal([]byte(out), &listed) != nil || listed["id"] != id || listed["role"] != "admin" || listed["revoked_at"] != nil {
		t.Fatalf("tokens list --workspace acme --json (%v): %s", err, out)
	}
	if _, _, err := l.run("tokens", "list", "--workspace", "nowhere"); err == nil {
		t.Fatal("tokens list of an unknown workspace succeeded")
	}

	// The right id with another secret: refused, and the token still works.
	forged := secret[:len(secret)-4] + "AAAA"
	if forged == secret {
		forged = secret[:len(secret)-4] + "BBBB"
	}
	if _, _, err := l.run("tokens", "revoke", forged); err == nil {
		t.Fatal("a secret that is not the token's revoked it")
	}
	want(t, l.do(secret, "GET", "/v1/tokens", nil), 200, "")

	out, _, err = l.run("tokens", "revoke", secret)
	if err != nil || !strings.Contains(out, "Revoked "+id) || strings.Contains(out, secret) {
		t.Fatalf("revoke by secret (%v): %q", err, out)
	}
	waitFor(t, 3*time.Second, "the revocation to reach the server", func() bool {
		return l.do(secret, "GET", "/v1/tokens", nil).Status == 401
	})
	if out, _, err := l.run("tokens", "revoke", id); err != nil || !strings.Contains(out, "already revoked") {
		t.Fatalf("revoking again (%v): %q", err, out)
	}
	out, _, _ = l.run("tokens", "list", "--workspace", "acme")
	if !strings.Contains(out, id) || strings.Contains(strings.Split(out, "\n")[1], " - ") {
		t.Fatalf("tokens list after revoke, want its time of revocation:\n%s", out)
	}
}

// TestHelpTexts walks every command's flags: a backtick in a flag's usage
// is taken by pflag as the name of its value, garbling the help
// ("--previous-kek-url keys rotate"), so none may have one.
func TestHelpTexts(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		check := func(f *pflag.Flag) {
			if strings.Contains(f.Usage, "`") {
				name, _ := pflag.UnquoteUsage(f)
				t.Errorf("%s --%s: its usage has a backtick, so --help shows it as \"--%s %s\"", c.CommandPath(), f.Name, f.Name, name)
			}
		}
		c.LocalFlags().VisitAll(check)
		c.PersistentFlags().VisitAll(check)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(main.NewRootCommand(io.Discard, io.Discard))
}
