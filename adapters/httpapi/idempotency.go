package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"hash"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/ledger"
	"github.com/labstack/echo/v4"
)

const (
	// IdempotencyTTL is how long the outcome of a request with an
	// Idempotency-Key is kept: repeats within it get the first answer.
	IdempotencyTTL = 48 * time.Hour
	// idempotencyLock is how long a running request holds its key; a
	// claim older than that belongs to a request that died with its process.
	idempotencyLock = 2 * time.Minute
	// maxStoredAnswer bounds the answers kept for replay.
	maxStoredAnswer = 16 << 20
)

var (
	errKeyReused = &kernel.Error{Code: kernel.CodeInvalid, Reason: "idempotency-key-reused",
		Message: "this Idempotency-Key was used with another request; use a new key for a new request"}
	errKeyInFlight = &kernel.Error{Code: kernel.CodeConflict, Reason: "idempotency-key-in-progress",
		Message: "a request with this Idempotency-Key is still running; retry shortly"}
	errBadKey = &kernel.Error{Code: kernel.CodeBadRequest, Reason: "invalid-idempotency-key",
		Message: "Idempotency-Key must be 1-255 visible ASCII characters"}
	errAnswerTooLarge = &kernel.Error{Code: kernel.CodeConflict, Reason: "idempotency-answer-unavailable",
		Message: "the first answer to this Idempotency-Key is not kept (it was too large, or held a secret shown only once); the request was done once and is not repeated"}
)

func validKey(k string) bool {
	if len(k) == 0 || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// fingerprint hashes what identifies a request besides its key: method,
// path, query and every byte of its body.
func fingerprint(r *http.Request) hash.Hash {
	h := sha256.New()
	h.Write([]byte(r.Method + "\x00" + r.URL.Path + "\x00" + r.URL.RawQuery + "\x00"))
	return h
}

// capture keeps a copy of the answer while writing it.
type capture struct {
	http.ResponseWriter
	buf      bytes.Buffer
	overflow bool
}

func (c *capture) Write(b []byte) (int, error) {
	if !c.overflow {
		if c.buf.Len()+len(b) > maxStoredAnswer {
			c.overflow = true
			c.buf = bytes.Buffer{}
		} else {
			c.buf.Write(b)
		}
	}
	return c.ResponseWriter.Write(b)
}

func (c *capture) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *capture) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// idempotencyKey names, in a request's context, the claim it runs under.
const idempotencyKey = "idempotency"

// idempotencySeed is what a command running under an Idempotency-Key knows
// of it: the key, and since when it is claimed (kept across a takeover).
type idempotencySeed struct {
	key   string
	since time.Time
}

// isDryRun reports whether a body asks for a dry run ("dry_run": true).
// Anything else (not JSON, another shape) is left to the handler to refuse.
func isDryRun(body []byte) bool {
	var r struct {
		DryRun bool `json:"dry_run"`
	}
	return json.Unmarshal(body, &r) == nil && r.DryRun
}

// replayed headers: what a client needs of the first answer.
var replayHeaders = []string{echo.HeaderContentType, "Location", "ETag"}

// idempotent makes a POST safe to retry: with an Idempotency-Key, the first
// request's outcome is stored (for 48 hours, across restarts) and a repeat
// with the same key and the same request gets the same answer without doing
// anything again; the same key with another request is refused (422). A key
// belongs to the token that sent it: another token's request with the same
// key is a request of its own, and a repeat passes authentication and the
// permission table again before it is answered. A repeat whose contact was
// erased since gets 410 erased, never the answer and never a second run.
// A body up to MaxBody is read and hashed before the key is claimed, so the
// claim carries the request's fingerprint from the start; a larger one (an
// import) is hashed as the handler reads it, and its fingerprint recorded
// once it is read whole, before the handler acts on it.
func (s *Server) idempotent(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		key := c.Request().Header.Get("Idempotency-Key")
		if key == "" || s.idem == nil {
			return next(c)
		}
		if !validKey(key) {
			return errBadKey
		}
		ctx, req := c.Request().Context(), c.Request()
		now := time.Now().UTC().Truncate(time.Microsecond)
		p := principal(c)
		fp := fingerprint(req)
		head, err := io.ReadAll(io.LimitReader(req.Body, MaxBody+1))
		if err != nil {
			var he *echo.HTTPError
			if errors.As(err, &he) {
				return he
			}
			return badRequest("unreadable-body", "the request body could not be read")
		}
		if len(head) <= MaxBody && isDryRun(head) {
			// A dry run changes nothing, so there is nothing to make safe to
			// retry: it consumes no key, and the real run can use the same one.
			req.Body = io.NopCloser(bytes.NewReader(head))
			return next(c)
		}
		fp.Write(head)
		var sum []byte // the request's fingerprint, once its whole body is hashed
		if len(head) <= MaxBody {
			sum = fp.Sum(nil)
			req.Body = io.NopCloser(bytes.NewReader(head))
		} else {
			req.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(head), req.Body), req.Body}
		}
		rec, claimed, err := s.idem.ClaimIdempotency(ctx, ledger.Idempotency{
			Workspace: p.Workspace, Principal: p.TokenID, Key: key, Fingerprint: sum,
			LockedUntil: now.Add(idempotencyLock), CreatedAt: now, ExpiresAt: now.Add(IdempotencyTTL),
		})
		if err != nil {
			return err
		}
		if !claimed {
			return s.replay(c, rec, fp, sum)
		}

		c.Set(idempotencyKey, idempotencySeed{key: key, since: rec.CreatedAt})
		var hb *hashingBody
		if sum == nil {
			hb = &hashingBody{r: req.Body, c: req.Body, h: fp}
			hb.whole = func() error {
				same, err := s.idem.SetIdempotencyFingerprint(ctx, p.Workspace, p.TokenID, key, fp.Sum(nil))
				if err == nil && !same {
					hb.mismatch, err = true, errKeyReused
				}
				return err
			}
			req.Body = hb
		}
		cw := &capture{ResponseWriter: c.Response().Writer}
		c.Response().Writer = cw
		if err := next(c); err != nil {
			c.Error(err)
		}
		c.Response().Writer = cw.ResponseWriter
		// Hash what the handler left unread too, so that a repeat (which
		// hashes the whole body) compares equal.
		if sum == nil {
			io.Copy(fp, http.MaxBytesReader(nil, req.Body, s.maxIdemBody))
			sum = fp.Sum(nil)
		}

		status := c.Response().Status
		store := context.WithoutCancel(ctx)
		if hb != nil && hb.mismatch {
			return nil // the claim is another request's (taken over after its process died): left as it is
		}
		if status >= 500 {
			if err := s.idem.ReleaseIdempotency(store, p.Workspace, p.TokenID, key); err != nil {
				s.log.Warn("releasing an idempotency key failed", "request_id", requestID(c), "err", err)
			}
			return nil
		}
		rec.Fingerprint, rec.Status, rec.Body = sum, status, cw.buf.Bytes()
		if secret, _ := c.Get(secretAnswer).(bool); cw.overflow || secret {
			rec.Status, rec.Body = 0, nil // done once; the answer is not kept
		}
		rec.Header = map[string]string{}
		for _, h := range replayHeaders {
			if v := c.Response().Header().Get(h); v != "" {
				rec.Header[h] = v
			}
		}
		rec.ContactID = c.Param("id")
		if loc := c.Response().Header().Get("Location"); rec.ContactID == "" && strings.HasPrefix(loc, "/v1/contacts/") {
			rec.ContactID = strings.TrimPrefix(loc, "/v1/contacts/")
		}
		if id, err := contact.ParseID(rec.ContactID); err == nil {
			rec.ContactID = id.String()
			// An answer about a contact is sealed with its data key: when
			// the contact is erased, every copy of the answer the store
			// may keep (free pages, WAL, backups) is unreadable with it.
			if rec.Body, err = s.svc.SealAnswer(store, rec, id); err != nil {
				s.log.Error("sealing an idempotent answer failed", "request_id", requestID(c), "err", err)
				rec.Status, rec.Body = 0, nil
			}
			if rec.Body == nil {
				rec.Status = 0
			}
		} else {
			rec.ContactID = ""
		}
		if err := s.idem.CompleteIdempotency(store, rec); err != nil {
			s.log.Error("storing an idempotent answer failed", "request_id", requestID(c), "err", err)
		}
		return nil
	}
}

// replay answers a request whose key is already taken by a record of the
// same token: 422 for another request, 409 while the first runs, 410 when
// the contact it is about was erased since, else the first answer.
func (s *Server) replay(c echo.Context, rec ledger.Idempotency, fp hash.Hash, sum []byte) error {
	req := c.Request()
	if sum == nil {
		if _, err := io.Copy(fp, http.MaxBytesReader(c.Response(), req.Body, s.maxIdemBody)); err != nil {
			return &kernel.Error{Code: kernel.CodeTooLarge, Reason: "body-too-large", Message: "the request body is over the limit"}
		}
		sum = fp.Sum(nil)
	}
	if rec.Fingerprint != nil && subtle.ConstantTimeCompare(sum, rec.Fingerprint) != 1 {
		return errKeyReused
	}
	if !rec.Done {
		c.Response().Header().Set("Retry-After", "1")
		return errKeyInFlight
	}
	if rec.ContactID != "" {
		id, err := contact.ParseID(rec.ContactID)
		if err != nil {
			return err
		}
		if rec.ErasedBy != "" {
			return &ledger.ErasedError{Contact: id, Tombstone: rec.ErasedBy}
		}
		// The erasure may be newer than the stripping of its answers.
		if gone, err := s.svc.Erasure(req.Context(), rec.Workspace, id); err != nil || gone != nil {
			if err != nil {
				return err
			}
			return gone
		}
	}
	if rec.Status == 0 {
		return errAnswerTooLarge
	}
	body := rec.Body
	if rec.ContactID != "" {
		id, _ := contact.ParseID(rec.ContactID)
		var err error
		if body, err = s.svc.OpenAnswer(req.Context(), rec, id); err != nil {
			return err
		}
		if body == nil {
			return errAnswerTooLarge // the key went with an erasure the log does not show yet
		}
	}
	for k, v := range rec.Header {
		c.Response().Header().Set(k, v)
	}
	c.Response().Header().Set("Idempotent-Replayed", "true")
	c.Response().WriteHeader(rec.Status)
	_, err := c.Response().Write(body)
	return err
}

// hashingBody hashes a request body as the handler reads it and, once it
// has been read whole, calls whole: an error of whole is the read's error.
type hashingBody struct {
	r     io.Reader
	c     io.Closer
	h     hash.Hash
	whole func() error
	done  bool
	// mismatch is set when the body read whole is not the claim's request.
	mismatch bool
}

func (b *hashingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.h.Write(p[:n])
	if err == io.EOF && !b.done {
		b.done = true
		if werr := b.whole(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func (b *hashingBody) Close() error { return b.c.Close() }
