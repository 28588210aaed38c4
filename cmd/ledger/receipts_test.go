package main_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/contactledger/ledger/ledger"
	"github.com/gowebpki/jcs"
)

// TestErasureReceipt issues receipts for a purged and an anonymized
// contact, verifies them offline against the deployment's published key and
// the contact's replayed trail, and shows every tampering rejected: any
// changed byte, a receipt re-signed with another key, an altered trail.
func TestErasureReceipt(t *testing.T) { eachStore(t, testErasureReceipt) }

func testErasureReceipt(t *testing.T, store string) {
	l := start(t, store)
	auditor := l.token("default", "auditor")
	dir := t.TempDir()
	id := l.create(map[string]any{"name": "Receipt Person", "email": "receipt@example.com", "phone": "+1 555 0100"})
	want(t, l.as("PATCH", "/v1/contacts/"+id, map[string]any{"job_title": "Clerk"}), 200, "")
	want(t, l.do(auditor, "GET", "/v1/contacts/"+id+"/erasure-receipt", nil), 409, "not-erased")
	want(t, l.as("POST", "/v1/contacts/"+id+"/trash", nil), 200, "")
	purge := l.as("POST", "/v1/contacts/"+id+"/purge", map[string]any{"reason": "data subject request", "request": "DSR-99"})
	want(t, purge, 200, "")

	r := l.do(auditor, "GET", "/v1/contacts/"+id+"/erasure-receipt", nil)
	want(t, r, 200, "")
	if bytes.Contains(r.Raw, []byte("Receipt Person")) || bytes.Contains(r.Raw, []byte("receipt@example.com")) {
		t.Fatal("the receipt carries personal data")
	}
	rc := r.Body["receipt"].(map[string]any)
	erasure, erased, trail := rc["erasure"].(map[string]any), rc["erased"].(map[string]any), rc["trail"].(map[string]any)
	if rc["outcome"] != "purged" || rc["contact_id"] != id || erasure["request"] != "DSR-99" || erasure["reason"] != nil ||
		erasure["event_id"] != purge.str("tombstone", "event_id") || erasure["by"].(map[string]any)["role"] != "admin" ||
		erased["key_destroyed"] != true || !strings.HasPrefix(erased["key_id"].(string), "dk_") || trail["events"] != float64(4) {
		t.Fatalf("receipt: %s", r.Raw)
	}
	if f := erased["fields"].([]any); len(f) != 4 { // name, email, phone, job_title
		t.Fatalf("erased fields %v, want name, email, phone, job_title", f)
	}
	receipt := filepath.Join(dir, "receipt.json")
	os.WriteFile(receipt, r.Raw, 0o600)

	// The deployment's key: from the API, and from the command line (a
	// process of its own, reading the key from the vault).
	pk := l.do(auditor, "GET", "/v1/receipts/public-key", nil)
	want(t, pk, 200, "")
	keyFile := filepath.Join(dir, "key.json")
	os.WriteFile(keyFile, pk.Raw, 0o600)
	out, _, err := l.run("receipts", "public-key")
	if err != nil || !strings.Contains(out, pk.str("public_key")) {
		t.Fatalf("receipts public-key (%v): %s, want the API's %s", err, out, pk.str("public_key"))
	}
	pemFile := filepath.Join(dir, "key.pem")
	os.WriteFile(pemFile, []byte(pk.str("pem")), 0o600)

	out, _, err = l.run("receipts", "verify", receipt)
	if err != nil || !strings.Contains(out, "Signature valid") || !strings.Contains(out, "Not checked against a trusted key") || !strings.Contains(out, "request DSR-99") {
		t.Fatalf("verify without a trusted key (%v): %s", err, out)
	}
	trailFile := filepath.Join(dir, "trail.ndjson")
	trailOut, _, err := l.run("replay", "contact", id, "--json")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(trailFile, []byte(trailOut), 0o600)
	for _, key := range []string{keyFile, pemFile} {
		out, _, err = l.run("receipts", "verify", receipt, "--public-key", key, "--trail", trailFile)
		if err != nil || !strings.Contains(out, "The signer is the trusted deployment key.") || !strings.Contains(out, "Trail verified: 4 events") {
			t.Fatalf("verify with %s and the trail (%v): %s", key, err, out)
		}
	}
	// The workspace export's lines serve as a trail too.
	exported := filepath.Join(dir, "export.ndjson")
	if _, _, err := l.run("replay", "workspace", "default", "--contact", id, "--out", exported); err != nil {
		t.Fatal(err)
	}
	if out, _, err = l.run("receipts", "verify", receipt, "--trail", exported); err != nil || !strings.Contains(out, "Trail verified") {
		t.Fatalf("verify with the exported trail (%v): %s", err, out)
	}

	// Reformatting keeps a receipt valid; changing any value breaks it.
	trusted, _ := base64.RawURLEncoding.DecodeString(pk.str("public_key"))
	checkReformatting(t, r.Raw, trusted)
	pretty := filepath.Join(dir, "pretty.json")
	var ind bytes.Buffer
	json.Indent(&ind, r.Raw, "", "    ")
	os.WriteFile(pretty, ind.Bytes(), 0o600)
	if out, _, err := l.run("receipts", "verify", pretty, "--public-key", pemFile); err != nil || !strings.Contains(out, "The signer is the trusted deployment key.") {
		t.Fatalf("verify a pretty-printed receipt (%v): %s", err, out)
	}
	tampered := filepath.Join(dir, "tampered.json")
	os.WriteFile(tampered, bytes.Replace(r.Raw, []byte("DSR-99"), []byte("DSR-98"), 1), 0o600)
	if _, _, err := l.run("receipts", "verify", tampered, "--public-key", keyFile); err == nil {
		t.Fatal("the command line verified a tampered receipt")
	}

	// A forger can sign a receipt of their own with their own key: it holds
	// together, but not against the deployment's key.
	var doc struct {
		Receipt   json.RawMessage `json:"receipt"`
		Signature string          `json:"signature"`
	}
	json.Unmarshal(r.Raw, &doc)
	var body ledger.Receipt
	json.Unmarshal(doc.Receipt, &body)
	fpub, fsk, _ := ed25519.GenerateKey(rand.Reader)
	body.Erasure.Request = "FORGED"
	body.Signer = ledger.ReceiptSigner{Algorithm: "ed25519", KeyID: ledger.KeyID(fpub), PublicKey: base64.RawURLEncoding.EncodeToString(fpub)}
	fb, _ := json.Marshal(body)
	fb, _ = jcs.Transform(fb)
	doc.Receipt, doc.Signature = fb, base64.RawURLEncoding.EncodeToString(ed25519.Sign(fsk, fb))
	forged, _ := json.Marshal(doc)
	forged = append(forged, '\n')
	if _, err := ledger.VerifyReceipt(forged, nil); err != nil {
		t.Fatalf("the forged receipt should hold together on its own: %v", err)
	}
	if _, err := ledger.VerifyReceipt(forged, trusted); !errors.Is(err, ledger.ErrBadReceipt) {
		t.Fatalf("forged receipt against the deployment's key: got %v, want rejected", err)
	}

	// An altered trail does not match.
	lines := strings.Split(strings.TrimSpace(trailOut), "\n")
	lines[1] = strings.Replace(lines[1], `"job_title"`, `"job_titlf"`, 1)
	os.WriteFile(trailFile, []byte(strings.Join(lines, "\n")), 0o600)
	if out, _, err := l.run("receipts", "verify", receipt, "--trail", trailFile); err == nil {
		t.Fatalf("verified against an altered trail: %s", out)
	}
	os.WriteFile(trailFile, []byte(strings.Join(strings.Split(strings.TrimSpace(trailOut), "\n")[:3], "\n")), 0o600)
	if _, _, err := l.run("receipts", "verify", receipt, "--trail", trailFile); err == nil {
		t.Fatal("verified against a trail missing its tombstone")
	}

	// Anonymized contacts get a receipt too; members don't see receipts.
	gid := l.create(map[string]any{"name": "Anon Person"})
	want(t, l.as("POST", "/v1/contacts/"+gid+"/trash", nil), 200, "")
	want(t, l.as("POST", "/v1/contacts/"+gid+"/anonymize", nil), 200, "")
	ra := l.do(auditor, "GET", "/v1/contacts/"+gid+"/erasure-receipt", nil)
	want(t, ra, 200, "")
	if ra.Body["receipt"].(map[string]any)["outcome"] != "anonymized" {
		t.Fatalf("anonymized receipt: %s", ra.Raw)
	}
	if _, err := ledger.VerifyReceipt(ra.Raw, trusted); err != nil {
		t.Fatal(err)
	}
	member := l.token("default", "member")
	want(t, l.do(member, "GET", "/v1/contacts/"+gid+"/erasure-receipt", nil), 403, "role-not-allowed")
	want(t, l.do(member, "GET", "/v1/receipts/public-key", nil), 403, "role-not-allowed")
	want(t, l.do(auditor, "GET", "/v1/contacts/01ARZ3NDEKTSV4RRFFQ69G5FAV/erasure-receipt", nil), 404, "not-found")
}

// checkReformatting checks a served receipt against what archives do to
// JSON: pretty-printed, without its final newline, with its keys reordered
// and with a member beside receipt and signature it still verifies under
// trusted; with any value of the receipt changed, its signature changed,
// or another key in its place, it fails.
func checkReformatting(t *testing.T, served []byte, trusted ed25519.PublicKey) {
	t.Helper()
	var ind bytes.Buffer
	if err := json.Indent(&ind, served, "", "  "); err != nil {
		t.Fatal(err)
	}
	var tree map[string]any
	dec := json.NewDecoder(bytes.NewReader(served))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		t.Fatal(err)
	}
	reordered, _ := json.Marshal(tree) // maps marshal with sorted keys: another order than issued
	withExtra := maps.Clone(tree)
	withExtra["propagation"] = map[string]any{"subscribers": []any{}}
	extra, _ := json.MarshalIndent(withExtra, "", "\t")
	for name, doc := range map[string][]byte{
		"served": served, "pretty-printed": ind.Bytes(), "without its final newline": bytes.TrimSpace(served),
		"keys reordered": reordered, "with another member": extra,
	} {
		if bytes.Equal(doc, served) && name != "served" {
			t.Fatalf("%s: the document did not change", name)
		}
		if _, err := ledger.VerifyReceipt(doc, trusted); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Every value of the receipt, changed: the receipt fails.
	var paths [][]string
	var walk func(v any, path []string)
	walk = func(v any, path []string) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				walk(c, append(slices.Clone(path), k))
			}
		case []any:
			for i, c := range x {
				walk(c, append(slices.Clone(path), strconv.Itoa(i)))
			}
		default:
			paths = append(paths, path)
		}
	}
	walk(tree["receipt"], []string{"receipt"})
	if len(paths) < 25 {
		t.Fatalf("the receipt has %d values; the walk missed some", len(paths))
	}
	for _, path := range append(paths, []string{"signature"}) {
		changed := changeValue(t, served, path)
		if _, err := ledger.VerifyReceipt(changed, nil); !errors.Is(err, ledger.ErrBadReceipt) {
			t.Errorf("%s changed: got %v, want the receipt rejected", strings.Join(path, "."), err)
		}
	}
	// Another key in the signer's place (with a matching key id) fails.
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	swapped := setValue(t, setValue(t, served, []string{"receipt", "signer", "public_key"}, base64.RawURLEncoding.EncodeToString(other)),
		[]string{"receipt", "signer", "key_id"}, ledger.KeyID(other))
	if _, err := ledger.VerifyReceipt(swapped, nil); !errors.Is(err, ledger.ErrBadReceipt) {
		t.Errorf("another public key: got %v, want rejected", err)
	}
	if _, err := ledger.VerifyReceipt(served, other); !errors.Is(err, ledger.ErrBadReceipt) {
		t.Errorf("checked against another trusted key: got %v, want rejected", err)
	}
}

// changeValue returns doc with the value at path changed: a string gets a
// character more, a number one more, a boolean its opposite.
func changeValue(t *testing.T, doc []byte, path []string) []byte {
	t.Helper()
	return editValue(t, doc, path, func(v any) any {
		switch x := v.(type) {
		case string:
			if x == "" {
				return "x"
			}
			return x[:len(x)-1] + string(rune(x[len(x)-1]^1))
		case json.Number:
			n, _ := x.Int64()
			return n + 1
		case bool:
			return !x
		case nil:
			return "x"
		}
		t.Fatalf("%v: not a value", path)
		return nil
	})
}

func setValue(t *testing.T, doc []byte, path []string, to any) []byte {
	t.Helper()
	return editValue(t, doc, path, func(any) any { return to })
}

func editValue(t *testing.T, doc []byte, path []string, edit func(any) any) []byte {
	t.Helper()
	var tree any
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&tree); err != nil {
		t.Fatal(err)
	}
	var set func(v any, path []string) any
	set = func(v any, path []string) any {
		if len(path) == 0 {
			return edit(v)
		}
		switch x := v.(type) {
		case map[string]any:
			x[path[0]] = set(x[path[0]], path[1:])
		case []any:
			i, _ := strconv.Atoi(path[0])
			x[i] = set(x[i], path[1:])
		}
		return v
	}
	out, err := json.Marshal(set(tree, path))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReceiptV1StillVerifies checks that a receipt issued in the first
// format (its signature over its bytes as issued) keeps verifying under its
// key, also with its whitespace changed, and fails with a value changed.
func TestReceiptV1StillVerifies(t *testing.T) {
	doc, err := os.ReadFile("testdata/receipt-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var key struct {
		PublicKey string `json:"public_key"`
	}
	raw, _ := os.ReadFile("testdata/receipt-v1.key.json")
	json.Unmarshal(raw, &key)
	trusted, _ := base64.RawURLEncoding.DecodeString(key.PublicKey)
	rc, err := ledger.VerifyReceipt(doc, trusted)
	if err != nil || rc.Format != ledger.ReceiptFormatV1 {
		t.Fatalf("v1 receipt: %v (format %q)", err, rc.Format)
	}
	var ind bytes.Buffer
	json.Indent(&ind, doc, "", "  ")
	if _, err := ledger.VerifyReceipt(ind.Bytes(), trusted); err != nil {
		t.Fatalf("v1 receipt pretty-printed: %v", err)
	}
	for _, path := range [][]string{{"receipt", "contact_id"}, {"receipt", "erasure", "request"}, {"receipt", "trail", "events"}, {"signature"}} {
		if _, err := ledger.VerifyReceipt(changeValue(t, doc, path), trusted); !errors.Is(err, ledger.ErrBadReceipt) {
			t.Errorf("v1 receipt with %v changed: got %v, want rejected", path, err)
		}
	}
}
