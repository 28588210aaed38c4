package ledger

import (
	"context"
	"slices"
	"strconv"
	"sync"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
)

// MaxBulk is the most contacts one bulk request may name.
const MaxBulk = 1000

// ErrCountMismatch is returned when a bulk request's confirmed count is not
// the number of contacts it names: the user confirmed something else, so nothing changes.
var ErrCountMismatch = &kernel.Error{Code: kernel.CodeInvalid, Reason: "count-mismatch", Message: "expected_count is not the number of ids; nothing was changed"}

// BulkRequest runs one lifecycle transition on many contacts.
type BulkRequest struct {
	Action Transition
	// IDs are the contacts as the client sent them; malformed ones fail on their own.
	IDs []string
	// ExpectedCount is the count the user confirmed.
	ExpectedCount int
	Input         TransitionInput
}

// BulkItem is what happened to one contact of a bulk request.
type BulkItem struct {
	ID     string
	Result Result
	Err    error
}

// Validate checks the request as a whole; when it fails, nothing changes.
func (r BulkRequest) Validate() error {
	if !slices.Contains(Transitions, r.Action) {
		return kernel.Invalid(kernel.FieldError{Field: "action", Message: "must be trash, restore, archive, unarchive, purge or anonymize"})
	}
	if len(r.IDs) > MaxBulk {
		return &kernel.Error{Code: kernel.CodeTooLarge, Reason: "too-many-ids", Message: "a bulk request names at most " + strconv.Itoa(MaxBulk) + " contacts; split it"}
	}
	if len(r.IDs) == 0 {
		return kernel.Invalid(kernel.FieldError{Field: "ids", Message: "must name at least one contact"})
	}
	if r.ExpectedCount != len(r.IDs) {
		return kernel.Errorf(ErrCountMismatch, "expected_count is %d but %d ids were sent; nothing was changed", r.ExpectedCount, len(r.IDs))
	}
	seen := make(map[string]bool, len(r.IDs))
	for _, id := range r.IDs {
		if seen[id] {
			return kernel.Invalid(kernel.FieldError{Field: "ids", Message: "names a contact more than once"})
		}
		seen[id] = true
	}
	return contact.ValidateReason(r.Input.Reason)
}

// bulkWorkers bounds how many chunks of a bulk request run at once, and
// bulkChunk how many contacts a chunk loads, decides and appends in one go
// (one commit: see Service.executeMany). A request of MaxBulk ids is one
// chunk per worker, all at once: chunks of 100 made it ten commits in
// three waves.
const (
	bulkWorkers = 4
	bulkChunk   = MaxBulk / bulkWorkers
)

// Bulk runs a transition on every contact of the request, each on its own:
// one failure (a malformed id, a protected source, a forbidden transition)
// does not stop the others. Items come back in the request's order.
func (s *Contacts) Bulk(ctx context.Context, workspace string, meta Meta, r BulkRequest) ([]BulkItem, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	// Every event of the request names it as its operation.
	meta.Operation = OperationBulk + meta.CorrelationID
	out := make([]BulkItem, len(r.IDs))
	var (
		ids []contact.ID
		at  []int
	)
	for i, raw := range r.IDs {
		out[i].ID = raw
		id, err := contact.ParseID(raw)
		if err != nil {
			out[i].Err = err
			continue
		}
		out[i].ID = id.String()
		ids, at = append(ids, id), append(at, i)
	}
	// Chunks of bulkChunk contacts are loaded in one go each, and a few
	// chunks run at once; every contact still changes on its own.
	type chunk struct{ from, to int }
	next := make(chan chunk)
	var wg sync.WaitGroup
	for range min(bulkWorkers, (len(ids)+bulkChunk-1)/bulkChunk) {
		wg.Go(func() {
			for c := range next {
				results, errs := s.TransitionMany(ctx, workspace, ids[c.from:c.to], meta, r.Action, r.Input)
				for j := range results {
					out[at[c.from+j]].Result, out[at[c.from+j]].Err = results[j], errs[j]
				}
			}
		})
	}
	for from := 0; from < len(ids); from += bulkChunk {
		next <- chunk{from, min(from+bulkChunk, len(ids))}
	}
	close(next)
	wg.Wait()
	return out, nil
}
