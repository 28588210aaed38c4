package ledger

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/gowebpki/jcs"
)

// ReceiptFormat names the format of the erasure receipts issued now: the
// signature covers the RFC 8785 (JCS) canonical form of the receipt, so a
// receipt still verifies after any reformatting that keeps its values
// (whitespace, key order, escapes), and fails after any change of a value.
const ReceiptFormat = "contact-ledger/erasure-receipt/v2"

// ReceiptFormatV1 names the first format, whose signature covers the
// receipt's bytes as issued (compact); such receipts keep verifying, as
// issued or with only their whitespace changed.
const ReceiptFormatV1 = "contact-ledger/erasure-receipt/v1"

// Canonicalization names how a receipt of ReceiptFormat is turned into the
// bytes its signature covers.
const Canonicalization = "RFC 8785 JSON Canonicalization Scheme (JCS)"

// Receipt is the signed statement that a contact's personal data was
// erased. It holds no personal data.
type Receipt struct {
	Format    string         `json:"format"`
	IssuedAt  time.Time      `json:"issued_at"`
	Workspace string         `json:"workspace"`
	Contact   string         `json:"contact_id"`
	Outcome   contact.State  `json:"outcome"` // purged or anonymized
	Erasure   ReceiptErasure `json:"erasure"`
	Erased    ReceiptErased  `json:"erased"`
	Kept      []ReceiptKept  `json:"kept"`
	Trail     ReceiptTrail   `json:"trail"`
	Signer    ReceiptSigner  `json:"signer"`
}

// ReceiptErasure is when, by whom and under what the erasure happened.
type ReceiptErasure struct {
	EventID string          `json:"event_id"`
	Type    string          `json:"type"`
	At      time.Time       `json:"at"`
	By      kernel.Actor    `json:"by"`
	Reason  string          `json:"reason,omitempty"`
	Trigger contact.Trigger `json:"trigger"`
	// Request references the request behind it (a data subject request, a ticket).
	Request string `json:"request,omitempty"`
	// RetentionDays is the policy's retention when the trigger was retention.
	RetentionDays int `json:"retention_days,omitempty"`
}

// ReceiptErased is what was erased and how.
type ReceiptErased struct {
	Fields       []string `json:"fields"`
	KeyID        string   `json:"key_id"`
	KeyDestroyed bool     `json:"key_destroyed"`
	Method       string   `json:"method"`
}

// ReceiptKept is something the ledger kept, and why.
type ReceiptKept struct {
	What string `json:"what"`
	Why  string `json:"why"`
}

// ReceiptTrail pins the contact's event trail: anyone can recompute the
// digest from `ledger replay contact <id> --json`.
type ReceiptTrail struct {
	Stream       string `json:"stream"`
	Events       uint64 `json:"events"`
	FirstEventID string `json:"first_event_id"`
	LastEventID  string `json:"last_event_id"`
	HeadHash     string `json:"head_hash"`
	Algorithm    string `json:"digest_algorithm"`
	Digest       string `json:"digest"`
}

// ReceiptSigner names the key that signed the receipt.
type ReceiptSigner struct {
	Algorithm string `json:"algorithm"`
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key"` // base64url
	// Canonicalization says what bytes the signature covers (v2 on).
	Canonicalization string `json:"canonicalization,omitempty"`
}

// signedReceipt is the document: the receipt and an ed25519 signature over
// its canonical form, and, beside them and not signed, how the erasure
// notice reached webhook subscribers. Verification ignores any member
// beside the first two.
type signedReceipt struct {
	Receipt   json.RawMessage `json:"receipt"`
	Signature string          `json:"signature"`
	// Propagation changes as acknowledgments arrive, so it stays outside
	// the signed member: the signature holds whenever the receipt is fetched.
	Propagation json.RawMessage `json:"propagation,omitempty"`
}

// ReceiptPropagation says which webhook subscribers were sent the erasure
// notice (contact.purged or contact.anonymized) and which acknowledged it
// with a 2xx answer (GDPR Art. 17(2) and 19). It is not signed.
type ReceiptPropagation struct {
	Signed        bool               `json:"signed"`
	AsOf          time.Time          `json:"as_of"`
	Subscriptions []PropagationEntry `json:"subscriptions"`
}

// The states of an erasure notice at one subscription.
const (
	NoticeAcknowledged = "acknowledged" // answered 2xx
	NoticeNotified     = "notified"     // sent, not acknowledged yet (retrying, or given up)
	NoticePending      = "pending"      // not sent yet
)

// PropagationEntry is the erasure notice at one subscription.
type PropagationEntry struct {
	Subscription   string     `json:"subscription_id"`
	Status         string     `json:"status"`
	NotifiedAt     *time.Time `json:"notified_at,omitempty"`
	AcknowledgedAt *time.Time `json:"acknowledged_at,omitempty"`
}

var b64 = base64.RawURLEncoding

// KeyID returns the id of an ed25519 public key: its SHA-256 fingerprint.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:16])
}

// The errors of receipts.
var (
	ErrNotErased      = &kernel.Error{Code: kernel.CodeConflict, Reason: "not-erased", Message: "the contact was not purged or anonymized; there is no erasure to prove"}
	ErrErasurePending = &kernel.Error{Code: kernel.CodeUnavailable, Reason: "erasure-pending", Message: "the contact's data key is still being destroyed; retry shortly"}
)

// ErasureReceipt issues a signed receipt for a purged or anonymized contact.
// It reads the trail from the log and checks its chain and that the key is
// really gone before it signs.
func (s *Audit) ErasureReceipt(ctx context.Context, workspace string, id contact.ID) ([]byte, error) {
	recs, err := s.events.ReadStream(ctx, workspace, id.Stream())
	if err != nil {
		return nil, err
	}
	tr, err := s.Trail(ctx, workspace, id, time.Time{}, 0)
	if err != nil {
		return nil, err
	}
	ts := tr.State.Tombstone
	if ts == nil {
		return nil, ErrNotErased
	}
	key, err := s.vault.ContactKey(ctx, workspace, id)
	if err != nil {
		return nil, err
	}
	if !key.Destroyed {
		return nil, ErrErasurePending
	}
	v := kernel.NewChainVerifier()
	hashes := make([][]byte, 0, len(recs))
	for _, r := range recs {
		if b := v.Add(r); b != nil {
			return nil, fmt.Errorf("receipt for %s: the trail's chain is broken at version %d (%s)", id, b.Version, b.Kind)
		}
		hashes = append(hashes, r.Hash)
	}
	sk, err := s.vault.SigningKey(ctx)
	if err != nil {
		return nil, err
	}
	pub := sk.Public().(ed25519.PublicKey)
	er := ts.Erasure
	rc := Receipt{
		Format: ReceiptFormat, IssuedAt: s.now(), Workspace: workspace, Contact: id.String(), Outcome: tr.State.State,
		// No reason: it is free text, sealed under the key the erasure destroyed.
		Erasure: ReceiptErasure{EventID: ts.EventID, Type: ts.Type, At: ts.At, By: ts.By, Trigger: er.Trigger,
			Request: er.Request, RetentionDays: er.RetentionDays},
		Erased: ReceiptErased{Fields: er.Erased, KeyID: er.KeyID, KeyDestroyed: true,
			Method: "crypto-shredding: the contact's AES-256-GCM data key was deleted from the key vault, so every sealed personal field in its events is unreadable"},
		Kept: []ReceiptKept{
			{What: fmt.Sprintf("the %d events of the contact's stream, with their sealed personal parts as ciphertext", len(recs)),
				Why: "the audit trail (who did what, when) is immutable; without the key the ciphertext cannot be read"},
			{What: "the clear event payloads: states, list statuses, link kinds, source system, actors (token ids), times and the erasure's request reference",
				Why: "they hold no personal data and prove what happened to the contact (reasons, tags, list names and link ids are sealed with the personal fields, except in events written before they were)"},
		},
		Trail: ReceiptTrail{Stream: id.Stream(), Events: uint64(len(recs)), FirstEventID: recs[0].ID.String(), LastEventID: recs[len(recs)-1].ID.String(),
			HeadHash: b64.EncodeToString(recs[len(recs)-1].Hash), Algorithm: kernel.TrailDigestAlgorithm, Digest: b64.EncodeToString(kernel.TrailDigest(hashes))},
		Signer: ReceiptSigner{Algorithm: "ed25519", KeyID: KeyID(pub), PublicKey: b64.EncodeToString(pub), Canonicalization: Canonicalization},
	}
	if rc.Erased.Fields == nil {
		rc.Erased.Fields = []string{}
	}
	if rc.Outcome == contact.StateAnonymized {
		rc.Kept = append(rc.Kept, ReceiptKept{What: `a non-personal shell in the anonymized view ("Deleted contact", state, source, dates)`,
			Why: "reports and related records keep their counts"})
	} else {
		rc.Kept = append(rc.Kept, ReceiptKept{What: "nothing in the read models", Why: "a purged contact is removed from every view"})
	}
	body, err := json.Marshal(rc)
	if err != nil {
		return nil, err
	}
	if body, err = jcs.Transform(body); err != nil {
		return nil, err
	}
	sr := signedReceipt{Receipt: body, Signature: b64.EncodeToString(ed25519.Sign(sk, body))}
	if s.webhooks != nil {
		prop, err := s.propagation(ctx, workspace, id, ts.At)
		if err != nil {
			return nil, err
		}
		// No subscriber had to be told: the receipt is as it always was.
		if len(prop.Subscriptions) > 0 {
			if sr.Propagation, err = json.Marshal(prop); err != nil {
				return nil, err
			}
		}
	}
	doc, err := json.Marshal(sr)
	if err != nil {
		return nil, err
	}
	return append(doc, '\n'), nil
}

// propagation lists every subscription that was sent the contact's erasure
// notice, and every subscription of the workspace made before the erasure
// that has not been sent it yet (delivery lags, or the subscription is disabled).
func (s *Audit) propagation(ctx context.Context, workspace string, id contact.ID, erasedAt time.Time) (ReceiptPropagation, error) {
	acks, err := s.webhooks.ErasureAcks(ctx, workspace, id.String())
	if err != nil {
		return ReceiptPropagation{}, err
	}
	hooks, err := s.webhooks.Webhooks(ctx, workspace)
	if err != nil {
		return ReceiptPropagation{}, err
	}
	out := ReceiptPropagation{AsOf: s.now(), Subscriptions: []PropagationEntry{}}
	seen := map[string]bool{}
	for _, a := range acks {
		e := PropagationEntry{Subscription: a.Webhook, Status: NoticeNotified, NotifiedAt: &a.NotifiedAt}
		if !a.AcknowledgedAt.IsZero() {
			e.Status, e.AcknowledgedAt = NoticeAcknowledged, &a.AcknowledgedAt
		}
		seen[a.Webhook] = true
		out.Subscriptions = append(out.Subscriptions, e)
	}
	for _, w := range hooks {
		if !seen[w.ID] && !w.CreatedAt.After(erasedAt) {
			out.Subscriptions = append(out.Subscriptions, PropagationEntry{Subscription: w.ID, Status: NoticePending})
		}
	}
	slices.SortFunc(out.Subscriptions, func(a, b PropagationEntry) int { return strings.Compare(a.Subscription, b.Subscription) })
	return out, nil
}

// ReceiptPropagationOf returns the unsigned propagation section of a
// receipt document, if it has one.
func ReceiptPropagationOf(doc []byte) (*ReceiptPropagation, error) {
	var sr signedReceipt
	if err := json.Unmarshal(doc, &sr); err != nil {
		return nil, err
	}
	if len(sr.Propagation) == 0 {
		return nil, nil
	}
	var p ReceiptPropagation
	if err := json.Unmarshal(sr.Propagation, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// SigningPublicKey returns the public half of the deployment's receipt-signing key.
func (s *Audit) SigningPublicKey(ctx context.Context) (ed25519.PublicKey, error) {
	sk, err := s.vault.SigningKey(ctx)
	if err != nil {
		return nil, err
	}
	return sk.Public().(ed25519.PublicKey), nil
}

// ExistingSigningPublicKey returns the public half of the deployment's
// receipt-signing key without ever creating one (checking receipts must not
// make a key they could not have been signed with). Errors: ErrNoSigningKey.
func (s *Audit) ExistingSigningPublicKey(ctx context.Context) (ed25519.PublicKey, error) {
	sk, err := s.vault.ExistingSigningKey(ctx)
	if err != nil {
		return nil, err
	}
	return sk.Public().(ed25519.PublicKey), nil
}

// ErrBadReceipt is returned for a receipt that fails verification.
var ErrBadReceipt = errors.New("the receipt does not verify")

// VerifyReceipt checks a receipt document offline: its signature must
// verify under the public key it names over the receipt's canonical form
// (v2: RFC 8785; v1: the compact bytes as issued), and, when trusted is
// set, that key must be the deployment's. Whitespace, key order and
// members beside "receipt" and "signature" do not matter; any changed value
// does. It returns the receipt.
func VerifyReceipt(doc []byte, trusted ed25519.PublicKey) (Receipt, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadReceipt, fmt.Sprintf(format, args...))
	}
	var sr signedReceipt
	if err := json.Unmarshal(doc, &sr); err != nil || sr.Receipt == nil || sr.Signature == "" {
		return Receipt{}, bad("not a receipt document (an object with receipt and signature)")
	}
	var head struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(sr.Receipt, &head); err != nil {
		return Receipt{}, bad("the receipt is not a JSON object")
	}
	var signed []byte
	switch head.Format {
	case ReceiptFormat:
		var err error
		if signed, err = jcs.Transform(sr.Receipt); err != nil {
			return Receipt{}, bad("the receipt cannot be canonicalized: %v", err)
		}
	case ReceiptFormatV1:
		var b bytes.Buffer
		if err := json.Compact(&b, sr.Receipt); err != nil {
			return Receipt{}, bad("the receipt cannot be read: %v", err)
		}
		signed = b.Bytes()
	default:
		return Receipt{}, bad("unknown format %q", head.Format)
	}
	var rc Receipt
	dec := json.NewDecoder(bytes.NewReader(sr.Receipt))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rc); err != nil {
		return Receipt{}, bad("the receipt cannot be read: %v", err)
	}
	if rc.Signer.Algorithm != "ed25519" {
		return Receipt{}, bad("unknown algorithm %q", rc.Signer.Algorithm)
	}
	pub, err := b64.DecodeString(rc.Signer.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return Receipt{}, bad("the signer's public key is malformed")
	}
	if KeyID(pub) != rc.Signer.KeyID {
		return Receipt{}, bad("the signer's key id does not match its public key")
	}
	sig, err := b64.DecodeString(sr.Signature)
	if err != nil || !ed25519.Verify(pub, signed, sig) {
		return Receipt{}, bad("the signature does not match the receipt")
	}
	if trusted != nil && !bytes.Equal(trusted, pub) {
		return Receipt{}, bad("signed by %s, not by the trusted key %s", rc.Signer.KeyID, KeyID(trusted))
	}
	return rc, nil
}

// CheckTrail recomputes a receipt's trail digest from the contact's events
// (as `ledger replay contact <id> --json` prints them): every chain hash is
// recomputed from the event's stored bytes, every link checked, and the
// digest, count and ends compared with the receipt's.
func CheckTrail(rc Receipt, recs []kernel.Record) error {
	v := kernel.NewChainVerifier()
	hashes := make([][]byte, 0, len(recs))
	for _, r := range recs {
		if r.Stream != rc.Trail.Stream {
			return fmt.Errorf("%w: the trail holds an event of %s, not %s", ErrBadReceipt, r.Stream, rc.Trail.Stream)
		}
		if b := v.Add(r); b != nil {
			return fmt.Errorf("%w: the trail's chain is broken at version %d: %s", ErrBadReceipt, b.Version, b.Detail)
		}
		hashes = append(hashes, r.Hash)
	}
	if uint64(len(recs)) != rc.Trail.Events || len(recs) == 0 {
		return fmt.Errorf("%w: the trail has %d events, the receipt %d", ErrBadReceipt, len(recs), rc.Trail.Events)
	}
	if d := b64.EncodeToString(kernel.TrailDigest(hashes)); d != rc.Trail.Digest {
		return fmt.Errorf("%w: the trail's digest is %s, the receipt's %s", ErrBadReceipt, d, rc.Trail.Digest)
	}
	if recs[0].ID.String() != rc.Trail.FirstEventID || recs[len(recs)-1].ID.String() != rc.Trail.LastEventID {
		return fmt.Errorf("%w: the trail's first or last event differs from the receipt's", ErrBadReceipt)
	}
	return nil
}
