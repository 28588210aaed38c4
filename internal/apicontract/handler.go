package apicontract

import (
	"bytes"
	"io"
	"net/http"
)

// MaxKept bounds how much of a request or answer body Handler keeps for
// validation; a larger request body is not validated, a larger answer is
// validated as cut off.
const MaxKept = 8 << 20

// Handler wraps next so that every exchange it serves is checked once it
// is done; report gets each violation. Answers still stream to the client
// as next writes them.
func (c *Checker) Handler(next http.Handler, report func(violation string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ex := Exchange{Request: r.Clone(r.Context())}
		if r.Body != nil && r.Body != http.NoBody {
			kept, err := io.ReadAll(io.LimitReader(r.Body, MaxKept+1))
			if err == nil && len(kept) <= MaxKept {
				ex.RequestBody = kept
			} else {
				ex.RequestBodyTooLarge = true
			}
			r.Body = readCloser{io.MultiReader(bytes.NewReader(kept), r.Body), r.Body}
		}
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		ex.Status, ex.Header, ex.Body = rec.status, w.Header().Clone(), rec.body.Bytes()
		ex.Truncated = rec.failed || rec.body.Len() >= MaxKept
		for _, v := range c.Check(ex) {
			report(v)
		}
	})
}

type readCloser struct {
	io.Reader
	io.Closer
}

// recorder passes an answer through and keeps a copy of it.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
	failed bool
}

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	if room := MaxKept - r.body.Len(); room > 0 {
		r.body.Write(b[:min(n, room)])
	}
	if err != nil {
		r.failed = true
	}
	return n, err
}

// Flush lets streamed answers through as they are written.
func (r *recorder) Flush() { _ = http.NewResponseController(r.ResponseWriter).Flush() }

// Unwrap gives http.ResponseController the writer underneath (deadlines).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
