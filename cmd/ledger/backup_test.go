package main_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/contactledger/ledger/adapters/sqlite"
	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/ledger"
	"github.com/gowebpki/jcs"
)

// TestBackupRestoreReapply backs a ledger up, erases contacts, restores the
// backup (which brings their keys and their personal data back, the log
// without its tombstones) and re-applies the erasures from their signed
// receipts: the keys are gone again, the tombstones are back in the log,
// the views and the history agree, and the personal strings are in no
// table. On PostgreSQL the backup follows the README's steps (pg_dump,
// pg_restore and `ledger backup` for the local keys).
func TestBackupRestoreReapply(t *testing.T) { eachStore(t, testBackupRestoreReapply) }

func testBackupRestoreReapply(t *testing.T, store string) {
	l := start(t, store)
	ctx := context.Background()
	run := "bkp" + randomString(8)
	person := func(who string) map[string]any {
		return map[string]any{"name": run + " " + who, "email": run + "." + who + "@example.com", "phone": "+1 202 555 01" + who[len(who)-2:],
			"tags": []string{run + "-" + who + "-tag"}}
	}
	purged := l.create(person("purged-01"))
	anon := l.create(person("anon-02"))
	kept := l.create(person("kept-03"))
	want(t, l.as("POST", "/v1/contacts/"+purged+"/notes", map[string]any{"text": run + " purged note"}), 201, "")
	purgedKey, anonKey := l.keyMaterial("default", purged), l.keyMaterial("default", anon)

	// The backup, taken while the server runs.
	dir := t.TempDir()
	backup := filepath.Join(dir, "backup")
	out, _, err := l.run("backup", "--out", backup)
	if err != nil || !strings.Contains(out, "Backed up") {
		t.Fatalf("backup (%v): %s", err, out)
	}
	for path, mode := range map[string]os.FileMode{backup: 0o700, filepath.Join(backup, "keys"): 0o700, filepath.Join(backup, "backup.json"): 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != mode {
			t.Fatalf("%s: %v, mode %v; want %v", path, err, fi.Mode().Perm(), mode)
		}
	}
	dump := filepath.Join(dir, "ledger.dump")
	if store == "postgres" {
		pgTool(t, "pg_dump", "-Fc", "-f", dump, "-d", l.Config.DatabaseURL)
	} else if fi, err := os.Stat(filepath.Join(backup, sqlite.FileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the snapshot: %v", err)
	}

	// The erasures after the backup, and their receipts, kept outside the ledger.
	var receipts []string
	for _, c := range []struct{ id, erase string }{{purged, "purge"}, {anon, "anonymize"}} {
		want(t, l.as("POST", "/v1/contacts/"+c.id+"/trash", nil), 200, "")
		want(t, l.as("POST", "/v1/contacts/"+c.id+"/"+c.erase, map[string]any{"request": "DSR-" + c.erase}), 200, "")
		r := l.as("GET", "/v1/contacts/"+c.id+"/erasure-receipt", nil)
		want(t, r, 200, "")
		f := filepath.Join(dir, c.erase+".receipt.json")
		os.WriteFile(f, r.Raw, 0o600)
		receipts = append(receipts, f)
	}

	// The restore: the server stopped, the backup put back in place.
	if err := l.Main.Close(); err != nil {
		t.Fatal(err)
	}
	if store == "postgres" {
		pgTool(t, "pg_restore", "--clean", "--if-exists", "--no-owner", "-d", l.Config.DatabaseURL, dump)
	} else {
		for _, f := range []string{sqlite.FileName, sqlite.FileName + "-wal", sqlite.FileName + "-shm"} {
			os.Remove(filepath.Join(l.Config.DataDir, f))
		}
		copyFile(t, filepath.Join(backup, sqlite.FileName), filepath.Join(l.Config.DataDir, sqlite.FileName))
	}
	keys := filepath.Join(l.Config.DataDir, "keys")
	os.RemoveAll(keys)
	os.MkdirAll(keys, 0o700)
	entries, _ := os.ReadDir(filepath.Join(backup, "keys"))
	for _, e := range entries {
		copyFile(t, filepath.Join(backup, "keys", e.Name()), filepath.Join(keys, e.Name()))
	}
	// The restore brought the purged person back: readable, no tombstone.
	if out, _, err := l.run("replay", "contact", purged); err != nil || !strings.Contains(out, run+" purged-01") || strings.Contains(out, "ContactPurged") {
		t.Fatalf("replay after the restore (%v): the backup should hold the person, without the erasure:\n%s", err, out)
	}
	// A receipt not signed by the deployment's key is refused, with all the others.
	forged := forgeReceipt(t, receipts[0])
	if out, _, err := l.run(append([]string{"erasures", "reapply", forged}, receipts...)...); err == nil {
		t.Fatalf("reapply took a receipt signed by another key:\n%s", out)
	}
	out, _, err = l.run(append([]string{"erasures", "reapply"}, receipts...)...)
	if err != nil || strings.Count(out, "tombstone re-written") != 2 || strings.Count(out, "data key destroyed again") != 2 {
		t.Fatalf("reapply (%v):\n%s", err, out)
	}
	// Again: nothing more to do.
	out, _, err = l.run(append([]string{"erasures", "reapply"}, receipts...)...)
	if err != nil || strings.Count(out, "tombstone present; no data key left") != 2 {
		t.Fatalf("reapply again (%v):\n%s", err, out)
	}

	if out, _, err := l.run("replay", "contact", purged); err != nil || strings.Contains(out, run) || !strings.Contains(out, "ContactPurged") {
		t.Fatalf("replay after reapply (%v):\n%s", err, out)
	}
	l.restart()
	for _, id := range []string{purged, anon} {
		cid, _ := contact.ParseID(id)
		if k, err := l.Vault().ContactKey(ctx, "default", cid); err != nil || !k.Destroyed {
			t.Fatalf("key of %s after reapply: %v, destroyed %v", id, err, k.Destroyed)
		}
	}
	want(t, l.as("GET", "/v1/contacts/"+purged, nil), 410, "purged")
	if r := l.as("GET", "/v1/contacts/"+anon, nil); r.Status != 200 || r.str("state") != "anonymized" || r.Body["shredded"] != true {
		t.Fatalf("anonymized contact after reapply: %s", r.Raw)
	}
	h := l.as("GET", "/v1/contacts/"+purged+"/history", nil)
	want(t, h, 200, "")
	if strings.Contains(string(h.Raw), run) || h.str("state", "state") != "purged" {
		t.Fatalf("history after reapply: %s", h.Raw)
	}
	if got := l.ids("view=active"); !slices.Equal(got, []string{kept}) {
		t.Fatalf("active view after reapply: %v, want only %s", got, kept)
	}
	if got := l.ids("view=anonymized"); !slices.Equal(got, []string{anon}) {
		t.Fatalf("anonymized view after reapply: %v", got)
	}
	secrets := []string{run + " purged-01", run + ".purged-01@", run + "-purged-01-tag", run + " purged note", run + " anon-02", run + ".anon-02@", run + "-anon-02-tag"}
	l.assertErased(secrets, purgedKey, anonKey)
}

// pgTool runs a PostgreSQL client program, as the README's backup steps do.
func pgTool(t *testing.T, name string, args ...string) {
	t.Helper()
	bin := name
	if dir := os.Getenv("LEDGER_TEST_PGBIN"); dir != "" {
		bin = filepath.Join(dir, name)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// forgeReceipt signs a copy of a receipt with a key of its own.
func forgeReceipt(t *testing.T, file string) string {
	t.Helper()
	raw, _ := os.ReadFile(file)
	var doc struct {
		Receipt   json.RawMessage `json:"receipt"`
		Signature string          `json:"signature"`
	}
	json.Unmarshal(raw, &doc)
	var rc ledger.Receipt
	json.Unmarshal(doc.Receipt, &rc)
	pub, sk, _ := ed25519.GenerateKey(rand.Reader)
	rc.Signer = ledger.ReceiptSigner{Algorithm: "ed25519", KeyID: ledger.KeyID(pub), PublicKey: base64.RawURLEncoding.EncodeToString(pub), Canonicalization: ledger.Canonicalization}
	body, _ := json.Marshal(rc)
	body, _ = jcs.Transform(body)
	doc.Receipt, doc.Signature = body, base64.RawURLEncoding.EncodeToString(ed25519.Sign(sk, body))
	out, _ := json.Marshal(doc)
	f := file + ".forged"
	os.WriteFile(f, out, 0o600)
	return f
}
