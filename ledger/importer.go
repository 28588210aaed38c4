package ledger

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/domain/shred"
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

// importChunk is how many rows an import reads, looks up, decides and
// writes in one go: one lookup of the identity index, one batch of creates
// (one commit) and one of updates per chunk.
const importChunk = 500

// importWindow is how many chunks' new identities an import remembers
// itself, for the rows after them that name the same person, before it
// relies on the identity index to show them: its memory stays bounded
// whatever the file's size.
const importWindow = 40

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
		return kernel.Invalid(kernel.FieldError{Field: "source", Message: "is required: the system the contacts come from, such as crm or web"})
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
// back as a new contact. A file that names a person twice creates it once
// and updates it with the later row.
//
// Rows go in chunks of importChunk: each chunk is looked up in the index
// in one go, its new contacts are created in one batch and its updates
// made in another, while the next chunk is read. Memory stays bounded
// whatever the file's size.
//
// Check the file with CheckImport first: a malformed file found here stops
// the import part way.
func (s *Imports) Import(ctx context.Context, workspace string, meta Meta, source string, rows RowReader, emit func(RowResult) error) (ImportTotals, error) {
	if err := ValidateImportSource(source); err != nil {
		return nil, err
	}
	if _, err := s.policy(ctx, workspace); err != nil {
		return nil, err
	}
	// An import is long anyway: wait for the identity index as long as it
	// takes (after a big import it has a lot to fold), not the 10 s of a query.
	head, err := s.events.Head(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.waitIdentities(ctx, head); err != nil {
		return nil, err
	}
	// Every event of the import names it as its operation.
	if meta.Operation == "" {
		meta.Operation = OperationImport + meta.CorrelationID
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	im := &importer{s: s.core, ws: workspace, meta: meta, source: source, local: map[string]contact.ID{}}

	// The reader parses the next chunk while the last one is written.
	chunks := make(chan []numberedRow, 1)
	var readErr error
	go func() {
		defer close(chunks)
		n := 0
		for {
			var part []numberedRow
			for len(part) < importChunk {
				row, err := rows.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					readErr = err
					cancel(err)
					return
				}
				n++
				part = append(part, numberedRow{n: n, row: row})
			}
			if len(part) == 0 {
				return
			}
			select {
			case chunks <- part:
			case <-ctx.Done():
				return
			}
			if len(part) < importChunk {
				return
			}
		}
	}()

	totals := ImportTotals{RowCreated: 0, RowUpdated: 0, RowUnchanged: 0, RowSkipped: 0}
	var failure, emitErr error
	for part := range chunks {
		if failure != nil || emitErr != nil {
			continue // drain: the reader stops at ctx's end
		}
		results, err := im.chunk(ctx, part)
		if err != nil {
			failure = err
			cancel(err)
		}
		for _, r := range results {
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
	case failure != nil:
		return totals, failure
	}
	return totals, ctx.Err()
}

// waitIdentities waits, as long as it takes, until the identity index has
// applied the log up to pos.
func (s *core) waitIdentities(ctx context.Context, pos kernel.Position) error {
	for {
		err := s.progress.WaitFor(ctx, identityProjection, pos)
		if err == nil {
			return nil
		}
		if kernel.ErrorCode(err) != kernel.CodeUnavailable || ctx.Err() != nil {
			return err
		}
		s.log.Info("import waits for the identity index to catch up")
	}
}

// numberedRow is a row of an import file with its number (1 for the first).
type numberedRow struct {
	n   int
	row ImportRow
}

// importer is one import's state: the identities it created, which the
// identity index may not show yet.
type importer struct {
	s      *core
	ws     string
	meta   Meta
	source string

	local  map[string]contact.ID // blind index -> contact created by this import
	window []remembered          // what local holds, a chunk each, oldest first
}

// remembered is what one chunk added to an import's memory: the indexes of
// the identities it created, and where the last of them is in the log.
type remembered struct {
	keys []string
	ids  []contact.ID
	upTo kernel.Position
}

// remember keeps the identities a chunk created, and forgets the oldest
// chunk's once the identity index shows them (it waits for that, which it
// seldom must: the index follows a chunk or two behind).
func (im *importer) remember(ctx context.Context, r remembered) error {
	if len(r.keys) == 0 {
		return nil
	}
	for i, k := range r.keys {
		im.local[k] = r.ids[i]
	}
	im.window = append(im.window, r)
	if len(im.window) <= importWindow {
		return nil
	}
	old := im.window[0]
	if err := im.s.waitIdentities(ctx, old.upTo); err != nil {
		return err
	}
	for i, k := range old.keys {
		// A later chunk may have remembered the key again (the same
		// person created anew after a purge): that one stays.
		if im.local[k] == old.ids[i] {
			delete(im.local, k)
		}
	}
	im.window = im.window[1:]
	return nil
}

func (im *importer) recall(q IdentityQuery) (contact.ID, bool) {
	for _, k := range []string{q.ExtIndex, q.EmailIndex} {
		if id, ok := im.local[k]; ok && k != "" {
			return id, true
		}
	}
	return contact.ID{}, false
}

// prepared is a row of a chunk made ready: the contact it would create
// and its identity's blind indexes.
type prepared struct {
	ok bool
	p  contact.Personal
	c  *contact.Contact
	q  IdentityQuery
}

// chunk imports one chunk of rows and returns each row's result, in order.
// Only failures of the store are errors: the rows they kept from being
// imported say so in their results.
func (im *importer) chunk(ctx context.Context, part []numberedRow) ([]RowResult, error) {
	s := im.s
	res := make([]RowResult, len(part))
	for i := range part {
		res[i].Row = part[i].n
	}
	bidx, err := s.vault.BlindIndex(ctx, im.ws)
	if err != nil {
		return stopped(res), err
	}
	preps := im.prepare(part, res, bidx)
	var qs []IdentityQuery
	var at []int
	for i, pr := range preps {
		if res[i].Result == "" && res[i].Reason != "" {
			return stopped(res), errors.New(res[i].Reason)
		}
		if pr.ok {
			qs, at = append(qs, pr.q), append(at, i)
		}
	}
	found, err := FindIdentitiesMany(ctx, s.identities, im.ws, qs)
	if err != nil {
		return stopped(res), err
	}

	// Decide each row in the file's order.
	pl := im.plan(preps, at, found, res)
	creates, updates, later, targets, index := pl.creates, pl.updates, pl.later, pl.targets, pl.index

	// The creates, in one batch.
	cs := make([]*contact.Contact, len(creates))
	known := make([][]IdentityMatch, len(creates))
	for k, i := range creates {
		cs[k], known[k] = preps[i].c, found[index[i]]
	}
	results, errs := s.createMany(ctx, im.ws, im.meta, cs, known)
	var mem remembered
	for k, i := range creates {
		var taken *IdentityTakenError
		if errors.As(errs[k], &taken) {
			skipRow(res, i, "identity taken: "+taken.Error())
			continue
		}
		if errs[k] != nil {
			return stopped(res), errs[k]
		}
		id := results[k].Contact.ID
		res[i].Result, res[i].ID = RowCreated, id.String()
		for _, key := range []string{preps[i].q.ExtIndex, preps[i].q.EmailIndex} {
			if key != "" {
				mem.keys, mem.ids = append(mem.keys, key), append(mem.ids, id)
			}
		}
		if mem.upTo.Less(results[k].Position) {
			mem.upTo = results[k].Position
		}
	}

	// The updates, in one batch; then the rows that update a contact this
	// chunk created, one by one in order.
	syncRow := func(i int) command {
		row, p := part[i].row, preps[i].p
		return func(l loaded, _ contact.Policy, now time.Time) error {
			return l.c.Sync(patchFor(l.c.Personal(), p), row.Tags, im.meta.Actor, now)
		}
	}
	ids := make([]contact.ID, len(updates))
	for k, i := range updates {
		ids[k] = targets[i]
	}
	upd, uerrs := s.executeEach(ctx, im.ws, ids, im.meta, func(k int) command { return syncRow(updates[k]) })
	var renewed []int // matched contacts erased since the index saw them
	for k, i := range updates {
		if err := synced(res, i, targets[i], upd[k], uerrs[k]); err != nil {
			return stopped(res), err
		}
		if res[i].Result == "" {
			renewed = append(renewed, i)
		}
	}
	for _, i := range later {
		r, err := s.execute(ctx, im.ws, targets[i], im.meta, syncRow(i))
		if err := synced(res, i, targets[i], r, err); err != nil {
			return stopped(res), err
		}
		if res[i].Result == "" {
			renewed = append(renewed, i)
		}
	}
	// A person erased since the index saw it comes back as a new contact.
	for _, i := range renewed {
		r, err := s.create(ctx, im.ws, im.meta, preps[i].c, found[index[i]])
		var taken *IdentityTakenError
		if errors.As(err, &taken) {
			skipRow(res, i, "identity taken: "+taken.Error())
			continue
		}
		if err != nil {
			return stopped(res), err
		}
		res[i].Result, res[i].ID = RowCreated, r.Contact.ID.String()
	}
	return res, im.remember(ctx, mem)
}

// prepare validates the rows and computes their identity queries, on
// every core (it is CPU). An invalid row is skipped; any other failure is
// left as its result's Reason without a Result, which stops the import.
func (im *importer) prepare(part []numberedRow, res []RowResult, bidx shred.BlindIndex) []prepared {
	s := im.s
	preps := make([]prepared, len(part))
	now := s.now()
	var wg sync.WaitGroup
	workers := min(runtime.GOMAXPROCS(0), len(part))
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(part); i += workers {
				row := part[i].row
				p := contact.Personal{Name: strings.TrimSpace(row.Name), Email: strings.TrimSpace(row.Email), Phone: strings.TrimSpace(row.Phone),
					JobTitle: strings.TrimSpace(row.JobTitle), Address: strings.TrimSpace(row.Address), ExternalID: strings.TrimSpace(row.ExternalID)}
				c, err := contact.Create(contact.NewID(), im.ws, contact.Draft{Personal: p, Source: im.source, Tags: row.Tags}, im.meta.Actor, now)
				if err != nil {
					var ce *kernel.Error
					if errors.As(err, &ce) && ce.Code == kernel.CodeInvalid {
						skipRow(res, i, "invalid: "+ce.Message)
						continue
					}
					res[i].Reason = err.Error() // not the row's fault: stops the import below
					continue
				}
				q := IdentityQuery{EmailIndex: bidx.Of("email", contact.NormalizeEmail(p.Email)), PhoneIndex: bidx.Of("phone", contact.NormalizePhone(p.Phone))}
				if p.ExternalID != "" {
					q.ExtIndex = bidx.Of("ext", im.source+"\x00"+p.ExternalID)
				}
				preps[i] = prepared{ok: true, p: p, c: c, q: q}
			}
		})
	}
	wg.Wait()
	return preps
}

// skipRow records that row i is skipped, and why.
func skipRow(res []RowResult, i int, reason string) {
	res[i].Result, res[i].Reason = RowSkipped, reason
}

// chunkPlan is what a chunk's valid rows come to, in the file's order.
type chunkPlan struct {
	creates, updates []int
	later            []int              // rows that update a contact a row before them in the chunk creates
	targets          map[int]contact.ID // row -> the contact it updates
	index            map[int]int        // row -> its matches in found
}

// plan decides each row in the file's order: skipped (spam, in trash), an
// update of the contact it matches, or a create. A row whose identity a
// row before it in this chunk creates updates that contact once it exists.
func (im *importer) plan(preps []prepared, at []int, found [][]IdentityMatch, res []RowResult) chunkPlan {
	pl := chunkPlan{targets: map[int]contact.ID{}, index: make(map[int]int, len(at))}
	creator := map[string]int{} // blind index -> row of this chunk that creates it
	for k, i := range at {
		pl.index[i] = k
		pr := preps[i]
		spam := false
		for _, m := range found[k] {
			spam = spam || (m.Spam && (m.ByEmail || m.ByPhone))
		}
		if spam {
			skipRow(res, i, "marked as spam: its email or phone belongs to a contact marked as spam")
			continue
		}
		if c, ok := creatorOf(creator, pr.q); ok {
			pl.targets[i] = preps[c].c.ID()
			pl.later = append(pl.later, i)
			continue
		}
		match, ok := im.match(pr.q, found[k])
		switch {
		case !ok:
			pl.creates = append(pl.creates, i)
			for _, key := range []string{pr.q.ExtIndex, pr.q.EmailIndex} {
				if key != "" {
					creator[key] = i
				}
			}
		case match.State == contact.StateTrashed:
			res[i].ID = match.ID.String()
			skipRow(res, i, "in trash: restore the contact to sync it again")
		case match.Spam:
			res[i].ID = match.ID.String()
			skipRow(res, i, "marked as spam")
		default:
			pl.targets[i] = match.ID
			pl.updates = append(pl.updates, i)
		}
	}
	return pl
}

// synced records the result of a row's update of the contact id. It
// leaves the result empty when the contact was erased since the index saw
// it (the row then creates a new one), and returns failures of the store.
func synced(res []RowResult, i int, id contact.ID, r Result, err error) error {
	res[i].ID = id.String()
	var (
		ce    *kernel.Error
		taken *IdentityTakenError
	)
	switch {
	case err == nil && r.EventID == "":
		res[i].Result = RowUnchanged
	case err == nil:
		res[i].Result = RowUpdated
	case errors.As(err, &taken):
		res[i].Result, res[i].Reason = RowSkipped, "identity taken: "+taken.Error()
	case errors.Is(err, contact.ErrNotEditable):
		res[i].Result, res[i].Reason = RowSkipped, "in trash: restore the contact to sync it again"
	case errors.Is(err, kernel.ErrInvalid) && errors.As(err, &ce):
		res[i].Result, res[i].Reason = RowSkipped, "invalid: "+ce.Message
	case errors.Is(err, contact.ErrPurged), errors.Is(err, contact.ErrTransition):
		res[i].ID = ""
	case errors.Is(err, kernel.ErrConcurrency):
		// Lost every retry to concurrent changes: this row alone waits.
		res[i].Result, res[i].Reason = RowSkipped, "changed by someone else during the import; import the row again"
	default:
		return err
	}
	return nil
}

// creatorOf returns the row of this chunk that creates the identity q names, if any.
func creatorOf(creator map[string]int, q IdentityQuery) (int, bool) {
	for _, k := range []string{q.ExtIndex, q.EmailIndex} {
		if i, ok := creator[k]; ok && k != "" {
			return i, true
		}
	}
	return 0, false
}

// stopped marks every row of a chunk whose result is not known as not
// imported: a failure of the store stopped the import.
func stopped(res []RowResult) []RowResult {
	for i := range res {
		if res[i].Result == "" {
			res[i].Result, res[i].Reason, res[i].ID = RowSkipped, "not imported: the import stopped", ""
		}
	}
	return res
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
