package ledger

import (
	"context"
	"errors"
	"hash/fnv"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/contactledger/ledger/domain/contact"
)

// The results of an import row.
const (
	RowCreated   = "created"
	RowUpdated   = "updated"
	RowUnchanged = "unchanged"
	RowSkipped   = "skipped"
)

// RowResult is what an import did with one row.
type RowResult struct {
	Row    int    `json:"row"`
	Result string `json:"result"`
	ID     string `json:"id,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// ImportTotals counts an import's rows by result.
type ImportTotals map[string]int

// importWorkers is how many rows an import works on at once; their appends
// share the store's group commits.
const importWorkers = 8

// CheckImport reads a whole import file without changing anything and
// returns how many rows it has, or the *FileError that makes it unusable.
func CheckImport(rows RowReader) (int, error) {
	n := 0
	for {
		_, err := rows.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
}

// ValidateImportSource is the one rule for an import's source, on the
// command line and over HTTP: it is required (it decides which external ids
// a row matches, and whether the contacts are protected from deletion), and
// it is a valid source name.
func ValidateImportSource(source string) error {
	if source == "" {
		return contact.Invalid(contact.FieldError{Field: "source", Message: "is required: the system the contacts come from, such as crm or web"})
	}
	return contact.ValidateSource(source)
}

// Import creates or updates the contacts of an import file from a source
// system and calls emit with each row's result, in the file's order.
//
// A row matches an existing contact by (source, external id), else by
// email, through blind indexes. A new identity is created; a match that is
// active or archived is updated with the row's non-empty fields and tags
// (an archived one stays archived) or left unchanged; a match in trash is
// skipped (in trash), and so is a row whose email or phone is marked as
// spam. A purged contact is gone from the index, so the same person comes
// back as a new contact. Rows that share an email go through one worker in
// order, so a file that names a person twice creates it once.
//
// Check the file with CheckImport first: a malformed file found here stops
// the import part way.
func (s *Service) Import(ctx context.Context, workspace string, meta Meta, source string, rows RowReader, emit func(RowResult) error) (ImportTotals, error) {
	if err := ValidateImportSource(source); err != nil {
		return nil, err
	}
	if _, err := s.policy(ctx, workspace); err != nil {
		return nil, err
	}
	// An import is long anyway: wait for the identity index as long as it
	// takes (after a big import it has a lot to fold), not the 10 s of a query.
	for {
		err := s.caughtUp(ctx, identityProjection)
		if err == nil {
			break
		}
		if contact.ErrorCode(err) != contact.CodeUnavailable || ctx.Err() != nil {
			return nil, err
		}
		s.log.Info("import waits for the identity index to catch up")
	}
	// Every event of the import names it as its operation.
	if meta.Operation == "" {
		meta.Operation = OperationImport + meta.CorrelationID
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	im := &importer{s: s, ws: workspace, meta: meta, source: source, local: map[string]contact.ID{}}
	type job struct {
		n   int
		row ImportRow
	}
	var (
		wg      sync.WaitGroup
		lanes   [importWorkers]chan job
		results = make(chan RowResult, 4*importWorkers)
	)
	for i := range lanes {
		lanes[i] = make(chan job, 16)
		wg.Go(func() {
			for j := range lanes[i] {
				r, err := im.row(ctx, j.n, j.row)
				if err != nil {
					cancel(err)
					r = RowResult{Row: j.n, Result: RowSkipped, Reason: "not imported: the import stopped"}
				}
				results <- r
			}
		})
	}
	// The reader: parse rows and hand each to the lane of its identity.
	var readErr error
	go func() {
		defer func() {
			for _, l := range lanes {
				close(l)
			}
		}()
		for n := 1; ; n++ {
			row, err := rows.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				readErr = err
				cancel(err)
				return
			}
			key := strconv.Itoa(n)
			if e := contact.NormalizeEmail(row.Email); e != "" {
				key = "e:" + e
			} else if row.ExternalID != "" {
				key = "x:" + strings.TrimSpace(row.ExternalID)
			}
			h := fnv.New32a()
			h.Write([]byte(key))
			select {
			case lanes[h.Sum32()%importWorkers] <- job{n: n, row: row}:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()

	// Emit results in the file's order.
	totals := ImportTotals{RowCreated: 0, RowUpdated: 0, RowUnchanged: 0, RowSkipped: 0}
	pending := map[int]RowResult{}
	next := 1
	var emitErr error
	for r := range results {
		pending[r.Row] = r
		for {
			r, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			totals[r.Result]++
			if emitErr == nil {
				if emitErr = emit(r); emitErr != nil {
					cancel(emitErr)
				}
			}
		}
	}
	switch {
	case readErr != nil:
		return totals, readErr
	case emitErr != nil:
		return totals, emitErr
	case context.Cause(ctx) != nil && !errors.Is(context.Cause(ctx), context.Canceled):
		return totals, context.Cause(ctx)
	}
	return totals, ctx.Err()
}

// importer is one import's state: the identities it created, which the
// identity index may not show yet.
type importer struct {
	s      *Service
	ws     string
	meta   Meta
	source string

	mu    sync.Mutex
	local map[string]contact.ID // blind index -> contact created by this import
}

func (im *importer) remember(q IdentityQuery, id contact.ID) {
	im.mu.Lock()
	defer im.mu.Unlock()
	for _, k := range []string{q.ExtIndex, q.EmailIndex} {
		if k != "" {
			im.local[k] = id
		}
	}
}

func (im *importer) recall(q IdentityQuery) (contact.ID, bool) {
	im.mu.Lock()
	defer im.mu.Unlock()
	for _, k := range []string{q.ExtIndex, q.EmailIndex} {
		if id, ok := im.local[k]; ok && k != "" {
			return id, true
		}
	}
	return contact.ID{}, false
}

// row imports one row. Only failures of the store are errors; everything
// about the row itself is its result.
func (im *importer) row(ctx context.Context, n int, row ImportRow) (RowResult, error) {
	res := RowResult{Row: n}
	skip := func(reason string) (RowResult, error) {
		res.Result, res.Reason = RowSkipped, reason
		return res, nil
	}
	p := contact.Personal{Name: strings.TrimSpace(row.Name), Email: strings.TrimSpace(row.Email), Phone: strings.TrimSpace(row.Phone),
		JobTitle: strings.TrimSpace(row.JobTitle), Address: strings.TrimSpace(row.Address), ExternalID: strings.TrimSpace(row.ExternalID)}
	c, err := contact.Create(contact.NewID(), im.ws, contact.Draft{Personal: p, Source: im.source, Tags: row.Tags}, im.meta.Actor, im.s.now())
	if err != nil {
		var ce *contact.Error
		if errors.As(err, &ce) && ce.Code == contact.CodeInvalid {
			return skip("invalid: " + ce.Message)
		}
		return res, err
	}
	q, err := im.s.identityOf(ctx, im.ws, im.source, p)
	if err != nil {
		return res, err
	}
	ms, err := im.s.identities.FindIdentities(ctx, im.ws, q)
	if err != nil {
		return res, err
	}
	for _, m := range ms {
		if m.Spam && (m.ByEmail || m.ByPhone) {
			return skip("marked as spam: its email or phone belongs to a contact marked as spam")
		}
	}
	match, found := im.match(q, ms)
	if found {
		switch {
		case match.State == contact.StateTrashed:
			res.ID = match.ID.String()
			return skip("in trash: restore the contact to sync it again")
		case match.Spam:
			res.ID = match.ID.String()
			return skip("marked as spam")
		}
		r, err := im.s.execute(ctx, im.ws, match.ID, im.meta, func(l loaded, _ contact.Policy, now time.Time) error {
			return l.c.Sync(patchFor(l.c.Personal(), p), row.Tags, im.meta.Actor, now)
		})
		res.ID = match.ID.String()
		var taken *IdentityTakenError
		switch {
		case errors.As(err, &taken):
			return skip("identity taken: " + taken.Error())
		case err == nil && r.EventID == "":
			res.Result = RowUnchanged
			return res, nil
		case err == nil:
			res.Result = RowUpdated
			return res, nil
		case errors.Is(err, contact.ErrNotEditable):
			return skip("in trash: restore the contact to sync it again")
		case errors.Is(err, contact.ErrInvalid):
			var ce *contact.Error
			errors.As(err, &ce)
			return skip("invalid: " + ce.Message)
		case !errors.Is(err, contact.ErrPurged) && !errors.Is(err, contact.ErrTransition):
			return res, err
		}
		// Purged or anonymized since the index saw it: the person comes back as new.
		res.ID = ""
	}
	r, err := im.s.create(ctx, im.ws, im.meta, c, ms)
	if taken := (*IdentityTakenError)(nil); errors.As(err, &taken) {
		return skip("identity taken: " + taken.Error())
	}
	if err != nil {
		return res, err
	}
	im.remember(q, c.ID())
	res.Result, res.ID = RowCreated, r.Contact.ID.String()
	return res, nil
}

// match finds the contact a row names among the index's matches ms: by
// (source, external id), else by email; among several, an active one
// before an archived one before one in trash.
func (im *importer) match(q IdentityQuery, ms []IdentityMatch) (IdentityMatch, bool) {
	if id, ok := im.recall(q); ok {
		return IdentityMatch{ID: id, State: contact.StateActive}, true
	}
	rank := map[contact.State]int{contact.StateActive: 0, contact.StateArchived: 1, contact.StateTrashed: 2}
	var best *IdentityMatch
	for _, byExt := range []bool{true, false} {
		for i := range ms {
			m := &ms[i]
			if (byExt && !m.ByExt) || (!byExt && !m.ByEmail) {
				continue
			}
			if best == nil || rank[m.State] < rank[best.State] {
				best = m
			}
		}
		if best != nil {
			return *best, true
		}
	}
	return IdentityMatch{}, false
}

// patchFor returns the changes that bring cur to the row's non-empty fields.
func patchFor(cur, row contact.Personal) contact.Patch {
	var p contact.Patch
	set := func(dst **string, now, want string) {
		if want != "" && want != now {
			v := want
			*dst = &v
		}
	}
	set(&p.Name, cur.Name, row.Name)
	set(&p.Email, cur.Email, row.Email)
	set(&p.Phone, cur.Phone, row.Phone)
	set(&p.JobTitle, cur.JobTitle, row.JobTitle)
	set(&p.Address, cur.Address, row.Address)
	return p
}
