package ledger

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/contactledger/ledger/domain/contact"
	"github.com/contactledger/ledger/domain/kernel"
	"github.com/contactledger/ledger/domain/shred"
)

// Views maps each view of the API to the lifecycle state it shows. Each view
// is kept by the projection of the same name.
var Views = map[string]contact.State{
	"active":     contact.StateActive,
	"archived":   contact.StateArchived,
	"trash":      contact.StateTrashed,
	"anonymized": contact.StateAnonymized,
}

// ViewNames lists the views in a stable order.
var ViewNames = []string{"active", "archived", "trash", "anonymized"}

// Options wires a Service.
type Options struct {
	Events    kernel.EventStore
	Vault     *Vault
	Directory Directory
	Views     ReadModels
	// Identities finds live contacts by blind index (imports, spam checks).
	Identities Identities
	// Claims keeps which contact holds each email and phone, written before
	// the append that gives it one, so that identity uniqueness holds under
	// concurrency and across replicas. Without it, uniqueness rests on the
	// identity index alone (eventually consistent).
	Claims   IdentityClaims
	Progress Progress
	// Sessions keeps the console's sessions; without it nobody can sign in to the console.
	Sessions SessionStore
	Now      func() time.Time
	Logger   *slog.Logger
	// Metrics, when set, is told of every command and append.
	Metrics Observer
	// KeysWithLog, when set, stores new contacts' keys with their first
	// events in one commit: set it when the log and the key vault share
	// one database (not when the log is EventStoreDB).
	KeysWithLog KeyedAppender
	// Webhooks keeps webhook subscriptions and their deliveries; Sender
	// checks their URLs and sends test messages. Without them the
	// webhook operations answer that webhooks are not configured.
	Webhooks WebhookStore
	Sender   WebhookSender
}

// core is what every capability shares: the ports, the vault, the clock,
// the caches, and the helpers that load, decide and append.
type core struct {
	events      kernel.EventStore
	vault       *Vault
	dir         Directory
	views       ReadModels
	identities  Identities
	claims      IdentityClaims
	progress    Progress
	sessions    SessionStore
	clock       func() time.Time
	log         *slog.Logger
	tokens      ttlCache[Token]
	workspaces  ttlCache[Workspace]
	metrics     Observer
	keysWithLog KeyedAppender
	// claimsWithLog is keysWithLog when the identity claims are in its
	// database too: a batch's claims commit with its appends.
	claimsWithLog ClaimedAppender
	jobKick       chan struct{}
	jobStatuses   jobStatuses
	watch         logWatch
	webhooks      WebhookStore
	sender        WebhookSender
}

// newCore wires the shared core from the options.
func newCore(o Options) *core {
	s := &core{
		events: o.Events, vault: o.Vault, dir: o.Directory, views: o.Views, identities: o.Identities, claims: o.Claims,
		progress: o.Progress, sessions: o.Sessions, clock: o.Now, log: o.Logger, metrics: o.Metrics,
		keysWithLog: o.KeysWithLog, jobKick: make(chan struct{}, 1), webhooks: o.Webhooks, sender: o.Sender,
	}
	if ca, ok := o.KeysWithLog.(ClaimedAppender); ok && o.Claims != nil && any(o.Claims) == any(o.KeysWithLog) {
		s.claimsWithLog = ca
	}
	if s.clock == nil {
		s.clock = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

func (s *core) now() time.Time { return s.clock().UTC().Truncate(time.Microsecond) }

// observe records a command's outcome when metrics are on.
func (s *core) observe(name string, start time.Time, err error) {
	if s.metrics != nil {
		s.metrics.Command(name, err, time.Since(start))
	}
}

// appendEvents appends to the log, timing it.
func (s *core) appendEvents(ctx context.Context, stream string, expected uint64, recs []kernel.Record) (kernel.Position, error) {
	start := time.Now()
	pos, err := s.events.Append(ctx, stream, expected, recs)
	if s.metrics != nil {
		s.metrics.Append(time.Since(start), err)
	}
	return pos, err
}

// View is a contact as queries show it.
type View struct {
	contact.Snapshot
	// PurgeAfter is when retention will purge a trashed contact, under the current policy.
	PurgeAfter *time.Time
	// Position is the position of the contact's newest event.
	Position kernel.Position
}

// Result is what a command did: the contact after it, its new version and
// the global position of its last event.
type Result struct {
	Contact  View
	Version  uint64
	Position kernel.Position
	// EventID is the id of the last event the command appended, or "" when
	// it changed nothing (or was a dry run).
	EventID string
	// Operation is the operation the command was part of: its events'
	// causation id (bulk:<request>, import:<id>, job:<id>, retention:<sweep>,
	// or the request id of a single request).
	Operation string
	// Effect is what the command did, or in a dry run would do.
	Effect Effect
	// DryRun is set when nothing was done: Contact, Version and Effect say
	// what would be, Position and EventID are empty, and Current is the
	// version the contact is at.
	DryRun  bool
	Current uint64
}

// Effect is what a command does to a contact: the state it moves it from
// and to, what the contact carries along (its notes, tags, lists and
// links: moved to trash, brought back, or erased with it), whether its
// data key is destroyed, and the events it appends.
type Effect struct {
	From, To     contact.State
	Notes        int
	Tags         int
	Lists        int
	Links        int
	KeyDestroyed bool
	Events       []string
}

// effectOf returns the effect of changes on a contact that was before.
func effectOf(before contact.Snapshot, c *contact.Contact, changes []contact.Change) Effect {
	e := Effect{From: before.State, To: c.State(), Notes: before.NoteCount, Tags: len(before.Tags), Lists: len(before.Lists), Links: len(before.Links)}
	for _, ch := range changes {
		e.Events = append(e.Events, ch.Event.EventType())
		switch ch.Event.(type) {
		case contact.Purged, contact.Anonymized:
			e.KeyDestroyed = true
		}
	}
	return e
}

type loaded struct {
	c    *contact.Contact
	recs []kernel.Record
	key  ContactKey
}

func (s *core) load(ctx context.Context, workspace string, id contact.ID) (loaded, error) {
	// The stream and the key are read at once: a command waits for one
	// round trip to the store, not two.
	var (
		key  ContactKey
		kerr error
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		key, kerr = s.vault.ContactKey(ctx, workspace, id)
	}()
	recs, err := s.events.ReadStream(ctx, workspace, id.Stream())
	<-done
	if err != nil {
		return loaded{}, err
	}
	if kerr == nil && key.Destroyed {
		// No key, read before the stream: it may have been read before the
		// commit of the contact's key and first event, and the stream
		// after. Read after the stream, a missing key is destroyed (a key
		// is never stored after its contact's first event). Rare: only
		// erased contacts have no key.
		key, kerr = s.vault.ContactKey(ctx, workspace, id)
	}
	if kerr != nil {
		return loaded{}, kerr
	}
	envs, err := open(key, recs)
	if err != nil {
		return loaded{}, err
	}
	c, err := contact.Replay(id, envs)
	if err != nil {
		return loaded{}, err
	}
	return loaded{c: c, recs: recs, key: key}, nil
}

func (s *core) policy(ctx context.Context, workspace string) (contact.Policy, error) {
	w, err := s.workspaces.get(ctx, workspace, s.dir.Workspace)
	if err != nil {
		return contact.Policy{}, err
	}
	return w.Policy, nil
}

func (s *core) view(c *contact.Contact, p contact.Policy, pos kernel.Position) View {
	v := View{Snapshot: c.Snapshot(), Position: pos}
	if days := p.RetentionDays(); c.State() == contact.StateTrashed && days > 0 {
		t := c.TrashedAt().AddDate(0, 0, days)
		v.PurgeAfter = &t
	}
	return v
}

// maxAttempts bounds how often a command without If-Match is retried after
// losing a race: it is rerun on the fresh state, so a retry is as correct as
// the first try.
const maxAttempts = 5

// execute loads a contact, runs a command on it and appends what it records.
func (s *core) execute(ctx context.Context, workspace string, id contact.ID, meta Meta, cmd command) (Result, error) {
	var res Result
	// apply tells a lost race (errLostRace) only when the request did not
	// name the version it expects (If-Match): then it runs again.
	err := kernel.Retry(maxAttempts, func() error {
		l, err := s.load(ctx, workspace, id)
		if err != nil {
			return err
		}
		res, err = s.apply(ctx, workspace, id, meta, l, cmd)
		return err
	}, errLostRace)
	if errors.Is(err, errLostRace) {
		err = kernel.ErrConcurrency
	}
	return res, err
}

// command is what a contact's command does to it once loaded.
type command func(l loaded, p contact.Policy, now time.Time) error

// errLostRace marks an append that lost to a concurrent one: the command
// may be run again on the fresh state.
var errLostRace = fmt.Errorf("%w (lost a race)", kernel.ErrConcurrency)

// apply runs a command on a loaded contact and appends what it records
// (in a dry run, only decides it).
func (s *core) apply(ctx context.Context, workspace string, id contact.ID, meta Meta, l loaded, cmd command) (Result, error) {
	p, err := s.policy(ctx, workspace)
	if err != nil {
		return Result{}, err
	}
	d, err := s.decide(ctx, workspace, id, meta, l, p, cmd, false)
	if err != nil || d.recs == nil {
		return d.result(s, kernel.Position{}), err
	}
	pos, err := s.appendEvents(ctx, id.Stream(), l.c.Saved(), d.recs)
	if err != nil {
		s.giveBack(ctx, workspace, id, d.ids)
	}
	if errors.Is(err, kernel.ErrConcurrency) {
		if meta.IfMatch != nil {
			return Result{}, err
		}
		return Result{}, errLostRace
	}
	if err != nil {
		return Result{}, err
	}
	s.settle(ctx, workspace, id, d.ids)
	if d.ids.waived {
		// The contact holds a value another contact's claim names (kept
		// both): only the identity index knows, so it must know before the
		// answer, as spam marks do. Such restores are rare; creates need
		// not wait for the index because of them.
		if err := s.progress.WaitFor(ctx, identityProjection, pos); err != nil {
			return Result{}, err
		}
	}
	return d.result(s, pos), nil
}

// decided is what a command did to a loaded contact: sealed for the log
// but not appended yet, or in a dry run only decided.
type decided struct {
	l      loaded
	p      contact.Policy
	recs   []kernel.Record // nil when the command changed nothing, or in a dry run
	op     string
	dry    bool
	effect Effect
	ids    identityChange
	held   []identityKey // the values the contact held before the command
}

// decide runs a command on a loaded contact: it checks what the command
// checks, claims the identities it gives the contact (in a dry run, only
// checks them), and seals what it records. A dry run and a real run of a
// command share every step but the writes, so the dry run's answer is the
// real run's. batched leaves the claims pending, for the batch to make.
func (s *core) decide(ctx context.Context, workspace string, id contact.ID, meta Meta, l loaded, p contact.Policy, cmd command, batched bool) (decided, error) {
	d, err := s.runCommand(ctx, workspace, meta, l, p, cmd)
	if err != nil {
		return decided{}, err
	}
	return s.guardAndSeal(ctx, workspace, id, meta, d, batched, nil)
}

// runCommand is decide's first half: it runs the command on the contact, without
// checking the identities it gives it.
func (s *core) runCommand(ctx context.Context, workspace string, meta Meta, l loaded, p contact.Policy, cmd command) (decided, error) {
	if meta.IfMatch != nil && *meta.IfMatch != l.c.Version() {
		return decided{}, kernel.Errorf(kernel.ErrConcurrency, "the contact is at version %d, not %d; reload and retry", l.c.Version(), *meta.IfMatch)
	}
	before, held, err := s.identitiesBefore(ctx, workspace, l.c, p)
	if err != nil {
		return decided{}, err
	}
	d := decided{l: l, p: p, op: meta.causation(), dry: meta.DryRun, held: held}
	l.c.Within(d.op)
	if err := cmd(l, p, s.now()); err != nil {
		return decided{}, err
	}
	if len(l.c.Changes()) > 0 {
		d.effect = effectOf(before, l.c, l.c.Changes())
	}
	return d, nil
}

// guardAndSeal is decide's second half: it checks and claims the identities the
// command gives the contact and seals its changes. known, when set, are
// the identity index's matches of identityQuery's query, read already.
func (s *core) guardAndSeal(ctx context.Context, workspace string, id contact.ID, meta Meta, d decided, batched bool, known *[]IdentityMatch) (decided, error) {
	changes := d.l.c.Changes()
	if len(changes) == 0 {
		return d, nil
	}
	var err error
	if d.ids, err = s.guardIdentities(ctx, workspace, id, d.p, d.held, d.l.c, changes, meta.DryRun, batched, known); err != nil {
		return decided{}, err
	}
	if meta.DryRun {
		return d, nil
	}
	last := d.l.recs[len(d.l.recs)-1]
	if d.recs, err = seal(d.l.key, id.Stream(), workspace, meta, d.l.c.Saved(), last.Hash, changes); err != nil {
		s.giveBack(ctx, workspace, id, d.ids)
		return decided{}, err
	}
	return d, nil
}

// result is the command's result once its events are at pos (unused when
// it changed nothing or was a dry run).
func (d decided) result(s *core, pos kernel.Position) Result {
	if d.l.c == nil {
		return Result{}
	}
	if d.recs == nil {
		last := d.l.recs[len(d.l.recs)-1]
		r := Result{Contact: s.view(d.l.c, d.p, last.Position), Version: d.l.c.Version(), Position: last.Position, Operation: d.op, Effect: d.effect}
		if d.dry {
			r.DryRun, r.Current = true, d.l.c.Saved()
			if len(d.l.c.Changes()) > 0 {
				r.Contact.Position, r.Position = kernel.Position{}, kernel.Position{}
			}
		}
		return r
	}
	v := s.view(d.l.c, d.p, pos)
	lastID := d.recs[len(d.recs)-1].ID.String()
	if v.Tombstone != nil {
		t := *v.Tombstone
		t.EventID = lastID
		v.Tombstone = &t
	}
	return Result{Contact: v, Version: d.l.c.Version(), Position: pos, EventID: lastID, Operation: d.op, Effect: d.effect}
}

// loadMany loads many contacts of a workspace with one read of their
// streams and one of their keys. A contact that cannot be loaded has its
// error instead.
func (s *core) loadMany(ctx context.Context, workspace string, ids []contact.ID) (map[contact.ID]loaded, map[contact.ID]error, error) {
	streams := make([]string, len(ids))
	for i, id := range ids {
		streams[i] = id.Stream()
	}
	all, err := kernel.ReadStreams(ctx, s.events, workspace, streams)
	if err != nil {
		return nil, nil, err
	}
	keys, err := s.vault.ContactKeys(ctx, workspace, ids)
	if err != nil {
		return nil, nil, err
	}
	out, failed := make(map[contact.ID]loaded, len(ids)), map[contact.ID]error{}
	for _, id := range ids {
		recs, ok := all[id.Stream()]
		if !ok {
			failed[id] = kernel.ErrNotFound
			continue
		}
		envs, err := open(keys[id], recs)
		if err != nil {
			return nil, nil, err
		}
		c, err := contact.Replay(id, envs)
		if err != nil {
			return nil, nil, err
		}
		out[id] = loaded{c: c, recs: recs, key: keys[id]}
	}
	return out, failed, nil
}

// manyWorkers bounds how many contacts of a batch are decided at once:
// deciding may read the identity index and the log of a contact holding a
// value, a round trip each (the batch's claims are made all at once).
const manyWorkers = 16

// onWorkers runs fn on each of is, on up to manyWorkers goroutines, and
// waits for them all.
func onWorkers(is []int, fn func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(manyWorkers, len(is)) {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for _, i := range is {
		next <- i
	}
	close(next)
	wg.Wait()
}

// executeMany runs one command on many contacts: loaded in one go,
// decided each on its own (one failure does not stop the others; the same
// decide as a single command's, identity claims included), and appended in
// one batch, one commit for them all. A contact that lost a race to a
// concurrent change, that the batch names twice, or whose identity claim
// another contact of the batch made first, runs again alone afterwards.
// Results and errors come back in the order of ids.
func (s *core) executeMany(ctx context.Context, workspace string, ids []contact.ID, meta Meta, cmd command) ([]Result, []error) {
	return s.executeEach(ctx, workspace, ids, meta, func(int) command { return cmd })
}

// executeEach is executeMany with a command of its own for each contact:
// cmd(i) for ids[i]. A contact named twice runs its later commands after
// the batch, in order.
func (s *core) executeEach(ctx context.Context, workspace string, ids []contact.ID, meta Meta, cmd func(i int) command) ([]Result, []error) {
	results, errs := make([]Result, len(ids)), make([]error, len(ids))
	fail := func(err error) ([]Result, []error) {
		for i := range errs {
			errs[i] = err
		}
		return results, errs
	}
	ls, failed, err := s.loadMany(ctx, workspace, ids)
	if err != nil {
		return fail(err)
	}
	p, err := s.policy(ctx, workspace)
	if err != nil {
		return fail(err)
	}
	var (
		again []int
		todo  []int
		seen  = make(map[contact.ID]bool, len(ids))
	)
	for i, id := range ids {
		switch {
		case failed[id] != nil:
			errs[i] = failed[id]
		case seen[id]:
			again = append(again, i) // the same id twice: run again on its own
		default:
			seen[id] = true
			todo = append(todo, i)
		}
	}
	ds := make([]decided, len(ids))
	for _, i := range todo {
		ds[i], errs[i] = s.runCommand(ctx, workspace, meta, ls[ids[i]], p, cmd(i))
	}
	known := s.identitiesOfMany(ctx, workspace, todo, ds, errs)
	// Checking identities may read the log of a contact holding a value: on several workers.
	onWorkers(todo, func(i int) {
		if errs[i] == nil {
			ds[i], errs[i] = s.guardAndSeal(ctx, workspace, ids[i], meta, ds[i], true, known[i])
		}
	})
	var (
		batch   []kernel.StreamAppend
		at      []int
		claimed = map[identityKey]bool{} // the values the batch claims
	)
	for _, i := range todo {
		d := ds[i]
		if errs[i] != nil || d.recs == nil {
			results[i] = d.result(s, kernel.Position{})
			continue
		}
		if slices.ContainsFunc(d.ids.pending, func(k identityKey) bool { return claimed[k] }) {
			// Two contacts of the batch would hold one value: the first
			// claims it, the later one runs again alone and is told.
			s.log.Debug("a batch gave one identity to two contacts; the later runs alone", "contact", ids[i].String())
			again = append(again, i)
			continue
		}
		for _, k := range d.ids.pending {
			claimed[k] = true
		}
		batch, at = append(batch, kernel.StreamAppend{Stream: ids[i].Stream(), Expected: d.l.c.Saved(), Events: d.recs}), append(at, i)
	}
	owners, chs := make([]contact.ID, len(at)), make([]identityChange, len(at))
	for k, i := range at {
		owners[k], chs[k] = ids[i], ds[i].ids
	}
	res, err := s.appendClaiming(ctx, workspace, owners, chs, nil, batch)
	if err != nil {
		for _, i := range at {
			errs[i] = err
		}
	}
	var (
		waitFor  kernel.Position
		appended []int
	)
	for k, r := range res {
		i := at[k]
		switch {
		case r.Err == nil:
			appended = append(appended, k)
			if ds[i].ids.waived && waitFor.Less(r.Position) {
				waitFor = r.Position
			}
			results[i] = ds[i].result(s, r.Position)
		case errors.Is(r.Err, ErrClaimTaken):
			again = append(again, i) // alone, a stale claim is taken over and a holder named
		case errors.Is(r.Err, kernel.ErrConcurrency) && meta.IfMatch == nil:
			again = append(again, i)
		default:
			errs[i] = r.Err
		}
	}
	s.settleMany(ctx, workspace, owners, chs, appended)
	if waitFor != (kernel.Position{}) {
		// A restore kept both contacts holding a value: only the identity
		// index knows, so it must know before the answer (see apply).
		if err := s.progress.WaitFor(ctx, identityProjection, waitFor); err != nil {
			for _, i := range at {
				if errs[i] == nil {
					results[i], errs[i] = Result{}, err
				}
			}
		}
	}
	slices.Sort(again)
	for _, i := range again {
		results[i], errs[i] = s.execute(ctx, workspace, ids[i], meta, cmd(i))
	}
	return results, errs
}

// identitiesOfMany reads, in one lookup, the identity index's matches of
// the values that each decided command of a batch gives its contact (what
// guardIdentities would read for each alone). A contact with nothing to
// check, or every contact when the lookup fails, gets nil: it reads alone.
func (s *core) identitiesOfMany(ctx context.Context, workspace string, todo []int, ds []decided, errs []error) map[int]*[]IdentityMatch {
	var (
		qs []IdentityQuery
		at []int
	)
	for _, i := range todo {
		if errs[i] != nil || len(ds[i].l.c.Changes()) == 0 {
			continue
		}
		n, err := s.identityNeed(ctx, workspace, ds[i].p, ds[i].held, ds[i].l.c, ds[i].l.c.Changes())
		if err != nil || len(n.need) == 0 {
			continue
		}
		qs, at = append(qs, n.query()), append(at, i)
	}
	if len(qs) == 0 {
		return nil
	}
	found, err := FindIdentitiesMany(ctx, s.identities, workspace, qs)
	if err != nil {
		s.log.Warn("a batched identity lookup failed; each contact looks up alone", "contacts", len(qs), "err", err)
		return nil
	}
	out := make(map[int]*[]IdentityMatch, len(at))
	for k, i := range at {
		out[i] = &found[k]
	}
	return out
}

// IdempotentID is the id a create running under an Idempotency-Key gives
// its contact: made of the key (hashed with its workspace and the principal
// it belongs to) and the time the key was first claimed, so every run of
// that create picks the same one, and no other token's key leads to it.
func IdempotentID(workspace, principal, key string, since time.Time) contact.ID {
	sum := sha256.Sum256([]byte(workspace + "\x00" + principal + "\x00" + key))
	return contact.IDFrom(since, sum[:])
}

// ErrErased is the reason of an ErasedError.
var ErrErased = &kernel.Error{Code: kernel.CodeGone, Reason: "erased",
	Message: "the contact this request created or is about was erased since it was first sent; it is not run again"}

// ErasedError answers a repeat of a request (same Idempotency-Key) whose
// contact was purged or anonymized since: it names the tombstone, nothing else.
type ErasedError struct {
	Contact   contact.ID
	Tombstone string    // the tombstone event's id
	At        time.Time // when the contact was erased
}

func (e *ErasedError) Error() string { return ErrErased.Message }

// Unwrap makes an ErasedError an ErrErased for errors.Is and the HTTP adapter.
func (e *ErasedError) Unwrap() error { return ErrErased }

// Erasure returns the erasure of a contact that was purged or anonymized,
// or nil for one that was not (or does not exist). It reads the log.
func (s *Contacts) Erasure(ctx context.Context, workspace string, id contact.ID) (*ErasedError, error) {
	return s.erasure(ctx, workspace, id)
}

func (s *core) erasure(ctx context.Context, workspace string, id contact.ID) (*ErasedError, error) {
	recs, err := s.events.ReadStream(ctx, workspace, id.Stream())
	if errors.Is(err, kernel.ErrNotFound) || (err == nil && len(recs) == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	last := recs[len(recs)-1]
	if last.Type != contact.TypePurged && last.Type != contact.TypeAnonymized {
		return nil, nil
	}
	return &ErasedError{Contact: id, Tombstone: last.ID.String(), At: last.Time}, nil
}

// Create creates a contact with a fresh data key. Errors: contact.ErrSpam
// when its email or phone belongs to a contact marked as spam.
func (s *Contacts) Create(ctx context.Context, workspace string, meta Meta, d contact.Draft) (res Result, err error) {
	defer func(start time.Time) { s.observe("create", start, err) }(time.Now())
	id, now := contact.NewID(), s.now()
	if meta.IdempotencyKey != "" {
		id = IdempotentID(workspace, meta.Actor.Principal, meta.IdempotencyKey, meta.IdempotentSince)
	}
	c, err := contact.Create(id, workspace, d, meta.Actor, now)
	if err != nil {
		return Result{}, err
	}
	// No wait for the identity index: spam marks wait until it holds them
	// before they are answered (MarkSpam), so it already has every mark
	// made before this request.
	q, err := s.identityOf(ctx, workspace, d.Source, d.Personal)
	if err != nil {
		return Result{}, err
	}
	q.ExtIndex = ""
	var ms []IdentityMatch
	if q.EmailIndex != "" || q.PhoneIndex != "" {
		if ms, err = s.identities.FindIdentities(ctx, workspace, q); err != nil {
			return Result{}, err
		}
	}
	if err := spamCheck(ms); err != nil {
		return Result{}, err
	}
	return s.create(ctx, workspace, meta, c, ms)
}

// create saves a new contact under a fresh data key. known are the
// identity index's matches of its email and phone, read already.
func (s *core) create(ctx context.Context, workspace string, meta Meta, c *contact.Contact, known []IdentityMatch) (Result, error) {
	p, err := s.policy(ctx, workspace)
	if err != nil {
		return Result{}, err
	}
	id, now := c.ID(), s.now()
	repeat := meta.IdempotencyKey != ""
	if s.claimsWithLog != nil {
		// The key, the claims and the first event commit together.
		res, done, err := s.createClaimed(ctx, workspace, meta, c, p, known)
		if done {
			return res, err
		}
		// One of the values is claimed by another contact (or a repeat
		// found its first run's key): the steps below take a stale claim
		// over, wait for a pending one, name the holder, and carry on with
		// the first run's key.
	}
	// The new contact's email and phone are claimed before anything is
	// written, and given back if it is not created.
	ids, err := s.guardIdentities(ctx, workspace, id, p, nil, c, c.Changes(), false, false, &known)
	if err != nil {
		return Result{}, err
	}
	created := false
	defer func() {
		if !created {
			s.giveBack(ctx, workspace, id, ids)
		}
	}()
	// repeated answers a repeat whose first run created the contact.
	repeated := func(fresh bool) (Result, error) {
		res, err := s.created(ctx, workspace, id, fresh)
		if err == nil {
			created, res.Operation = true, meta.causation()
		}
		return res, err
	}
	if s.keysWithLog != nil {
		// The key and the first event commit together.
		key, row, err := s.vault.WrapNewKey(ctx, workspace, id, now)
		if err != nil {
			return Result{}, err
		}
		recs, err := seal(key, id.Stream(), workspace, meta, 0, nil, c.Changes())
		if err != nil {
			return Result{}, err
		}
		start := time.Now()
		res, err := s.keysWithLog.AppendWithKeys(ctx, []KeyRow{row}, []kernel.StreamAppend{{Stream: id.Stream(), Events: recs}})
		if err == nil {
			err = res[0].Err
		}
		if s.metrics != nil {
			s.metrics.Append(time.Since(start), err)
		}
		switch {
		case err == nil:
			created = true
			return Result{Contact: s.view(c, p, res[0].Position), Version: c.Version(), Position: res[0].Position, EventID: recs[0].ID.String(), Operation: meta.causation()}, nil
		case repeat && errors.Is(err, kernel.ErrConcurrency):
			return repeated(false)
		case !repeat || !errors.Is(err, kernel.ErrAlreadyExists):
			return Result{}, err
		}
		// A first run of this idempotent create, from before keys and
		// events committed together, stored the key and died: carry on
		// with its key below.
	}
	key, fresh := ContactKey{}, false
	k, keyID, err := s.vault.NewContactKey(ctx, workspace, id, now)
	switch {
	case err == nil:
		key, fresh = ContactKey{Key: k, KeyID: keyID}, true
	case repeat && errors.Is(err, kernel.ErrAlreadyExists):
		// A first run of this idempotent create stored the key and died:
		// carry on with its key.
		if key, err = s.vault.ContactKey(ctx, workspace, id); err != nil {
			return Result{}, err
		}
	default:
		return Result{}, err
	}
	recs, err := seal(key, id.Stream(), workspace, meta, 0, nil, c.Changes())
	if err != nil {
		return Result{}, err
	}
	pos, err := s.appendEvents(ctx, id.Stream(), 0, recs)
	if repeat && errors.Is(err, kernel.ErrConcurrency) {
		return repeated(fresh)
	}
	if err != nil {
		if derr := s.vault.Destroy(context.WithoutCancel(ctx), workspace, id); derr != nil {
			s.log.Warn("cannot remove the key of a contact that was not created", "contact", id.String(), "err", derr)
		}
		return Result{}, err
	}
	created = true
	return Result{Contact: s.view(c, p, pos), Version: c.Version(), Position: pos, EventID: recs[0].ID.String(), Operation: meta.causation()}, nil
}

// createClaimed saves a new contact, its key and its identity claims in
// one commit. done is false, with nothing stored, when another contact
// claimed one of its values, or when a repeat finds a key its first run
// stored: create goes on step by step.
func (s *core) createClaimed(ctx context.Context, workspace string, meta Meta, c *contact.Contact, p contact.Policy, known []IdentityMatch) (res Result, done bool, err error) {
	id, now := c.ID(), s.now()
	ids, err := s.guardIdentities(ctx, workspace, id, p, nil, c, c.Changes(), false, true, &known)
	if err != nil {
		return Result{}, true, err
	}
	key, row, err := s.vault.WrapNewKey(ctx, workspace, id, now)
	if err != nil {
		return Result{}, true, err
	}
	recs, err := seal(key, id.Stream(), workspace, meta, 0, nil, c.Changes())
	if err != nil {
		return Result{}, true, err
	}
	ar, err := s.appendClaiming(ctx, workspace, []contact.ID{id}, []identityChange{ids}, []KeyRow{row}, []kernel.StreamAppend{{Stream: id.Stream(), Events: recs}})
	if err == nil {
		err = ar[0].Err
	}
	switch {
	case err == nil:
		return Result{Contact: s.view(c, p, ar[0].Position), Version: c.Version(), Position: ar[0].Position, EventID: recs[0].ID.String(), Operation: meta.causation()}, true, nil
	case errors.Is(err, ErrClaimTaken):
		return Result{}, false, nil
	case meta.IdempotencyKey != "" && errors.Is(err, kernel.ErrConcurrency):
		res, err := s.created(ctx, workspace, id, false)
		if err == nil {
			res.Operation = meta.causation()
		}
		return res, true, err
	case meta.IdempotencyKey != "" && errors.Is(err, kernel.ErrAlreadyExists):
		return Result{}, false, nil
	}
	return Result{}, true, err
}

// createMany saves many new contacts, each under a fresh data key, in one
// batch: with the keys in the same commit when the log and the key vault
// share a database. known[i] are the identity index's matches of cs[i]'s
// email and phone, read already. Each contact's email and phone are
// claimed as a single create claims them, and given back if it is not
// created; a contact given a value an earlier one of the batch holds is
// created alone afterwards (and told the value is taken). Results and
// errors come back in the order of cs.
func (s *core) createMany(ctx context.Context, workspace string, meta Meta, cs []*contact.Contact, known [][]IdentityMatch) ([]Result, []error) {
	results, errs := make([]Result, len(cs)), make([]error, len(cs))
	if len(cs) == 0 {
		return results, errs
	}
	fail := func(err error) ([]Result, []error) {
		for i := range errs {
			results[i], errs[i] = Result{}, err
		}
		return results, errs
	}
	p, err := s.policy(ctx, workspace)
	if err != nil {
		return fail(err)
	}
	later, err := s.sharedInBatch(ctx, workspace, p, cs)
	if err != nil {
		return fail(err)
	}
	var todo []int
	for i := range cs {
		if !later[i] {
			todo = append(todo, i)
		}
	}
	// Checking identities reads a contact or two when the index knows one
	// of its values: on several workers. The claims are the batch's.
	ids := make([]identityChange, len(cs))
	onWorkers(todo, func(i int) {
		ids[i], errs[i] = s.guardIdentities(ctx, workspace, cs[i].ID(), p, nil, cs[i], cs[i].Changes(), false, true, &known[i])
	})
	var at []int
	for _, i := range todo {
		if errs[i] == nil {
			at = append(at, i)
		}
	}
	now := s.now()
	rows := make([]KeyRow, len(at))
	batch := make([]kernel.StreamAppend, len(at))
	// Wrapping keys and sealing events is the CPU of a create: on every core.
	workers := min(runtime.GOMAXPROCS(0), len(at))
	werrs := make([]error, len(at))
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for k := w; k < len(at); k += workers {
				c := cs[at[k]]
				var key ContactKey
				if s.keysWithLog != nil {
					key, rows[k], werrs[k] = s.vault.WrapNewKey(ctx, workspace, c.ID(), now)
				} else {
					var keyID string
					key.Key, keyID, werrs[k] = s.vault.NewContactKey(ctx, workspace, c.ID(), now)
					key.KeyID = keyID
				}
				if werrs[k] != nil {
					continue
				}
				var recs []kernel.Record
				recs, werrs[k] = seal(key, c.ID().Stream(), workspace, meta, 0, nil, c.Changes())
				batch[k] = kernel.StreamAppend{Stream: c.ID().Stream(), Events: recs}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(werrs...); err != nil {
		return fail(err)
	}
	owners, chs := make([]contact.ID, len(at)), make([]identityChange, len(at))
	for k, i := range at {
		owners[k], chs[k] = cs[i].ID(), ids[i]
	}
	var keys []KeyRow
	if s.keysWithLog != nil {
		keys = rows
	}
	res, err := s.appendClaiming(ctx, workspace, owners, chs, keys, batch)
	if err != nil {
		return fail(err)
	}
	for k, r := range res {
		i, c := at[k], cs[at[k]]
		if r.Err != nil {
			if s.keysWithLog == nil {
				if derr := s.vault.Destroy(context.WithoutCancel(ctx), workspace, c.ID()); derr != nil {
					s.log.Warn("cannot remove the key of a contact that was not created", "contact", c.ID().String(), "err", derr)
				}
			}
			if errors.Is(r.Err, ErrClaimTaken) {
				// Another contact claimed a value meanwhile: created alone,
				// where a stale claim is taken over and a holder named.
				later[i] = true
			} else {
				errs[i] = r.Err
			}
			continue
		}
		results[i] = Result{Contact: s.view(c, p, r.Position), Version: c.Version(), Position: r.Position, EventID: batch[k].Events[0].ID.String(), Operation: meta.causation()}
	}
	for i := range cs {
		if later[i] {
			results[i], errs[i] = s.create(ctx, workspace, meta, cs[i], known[i])
		}
	}
	return results, errs
}

// sharedInBatch marks the new contacts of a batch that would hold an email
// or phone an earlier one of the batch holds, under a policy that keeps
// each to one contact: they are created after the batch, one by one, so
// that the earlier contact's claim has a stream behind it.
func (s *core) sharedInBatch(ctx context.Context, workspace string, p contact.Policy, cs []*contact.Contact) ([]bool, error) {
	later := make([]bool, len(cs))
	if p.Uniqueness() == contact.UniquenessOff {
		return later, nil
	}
	b, err := s.vault.BlindIndex(ctx, workspace)
	if err != nil {
		return nil, err
	}
	first := map[identityKey]bool{}
	for i, c := range cs {
		ks := heldIdentities(b, c, p)
		for _, k := range ks {
			later[i] = later[i] || first[k]
		}
		if !later[i] {
			for _, k := range ks {
				first[k] = true
			}
		}
	}
	return later, nil
}

// created answers a repeated idempotent create whose first run created
// the contact, unless it was erased since: then the key this run made
// (fresh) goes at once, and the repeat is told so (a retry must never
// bring an erased person back).
func (s *core) created(ctx context.Context, workspace string, id contact.ID, fresh bool) (Result, error) {
	if gone, gerr := s.erasure(ctx, workspace, id); gerr != nil || gone != nil {
		if fresh {
			if derr := s.vault.Destroy(context.WithoutCancel(ctx), workspace, id); derr != nil {
				s.log.Error("cannot remove a key made for an erased contact", "contact", id.String(), "err", derr)
			}
		}
		if gerr != nil {
			return Result{}, gerr
		}
		return Result{}, gone
	}
	v, err := s.get(ctx, workspace, id)
	if err != nil {
		return Result{}, err
	}
	return Result{Contact: v, Version: v.Version, Position: v.Position}, nil
}

// Update changes personal fields of an active contact.
func (s *Contacts) Update(ctx context.Context, workspace string, id contact.ID, meta Meta, p contact.Patch) (res Result, err error) {
	defer func(start time.Time) { s.observe("update", start, err) }(time.Now())
	return s.execute(ctx, workspace, id, meta, func(l loaded, _ contact.Policy, now time.Time) error {
		return l.c.Update(p, meta.Actor, now)
	})
}

// Transition names a lifecycle command that takes only a reason.
type Transition string

// The lifecycle transitions.
const (
	Archive   Transition = "archive"
	Unarchive Transition = "unarchive"
	Trash     Transition = "trash"
	Restore   Transition = "restore"
	Purge     Transition = "purge"
	Anonymize Transition = "anonymize"
)

// Transitions lists every transition.
var Transitions = []Transition{Archive, Unarchive, Trash, Restore, Purge, Anonymize}

// Erasing reports whether t destroys the contact's key.
func (t Transition) Erasing() bool { return t == Purge || t == Anonymize }

// TransitionInput is the input of a lifecycle command.
type TransitionInput struct {
	Reason string
	// Request references the request behind an erasure (a ticket, a data subject request).
	Request string
	// Trigger is what caused an erasure; TriggerRequest when empty.
	Trigger contact.Trigger
	// KeepBoth lets a restore go ahead although a live contact holds the
	// restored one's email or phone now (on_conflict: keep_both).
	KeepBoth bool
}

// Transition runs a lifecycle command. Purge and anonymize destroy the
// contact's data key once the tombstone is in the log.
func (s *Contacts) Transition(ctx context.Context, workspace string, id contact.ID, meta Meta, t Transition, in TransitionInput) (res Result, err error) {
	defer func(start time.Time) { s.observe(string(t), start, err) }(time.Now())
	res, err = s.execute(ctx, workspace, id, meta, transitionCommand(t, in, meta))
	if err == nil && t.Erasing() && res.EventID != "" {
		s.erased(ctx, workspace, id)
	}
	return res, err
}

// TransitionMany runs a lifecycle command on many contacts of a workspace,
// each on its own (one failure does not stop the others), loading them in
// one go. Results and errors come back in the order of ids.
func (s *Contacts) TransitionMany(ctx context.Context, workspace string, ids []contact.ID, meta Meta, t Transition, in TransitionInput) ([]Result, []error) {
	start := time.Now()
	results, errs := s.executeMany(ctx, workspace, ids, meta, transitionCommand(t, in, meta))
	var erased []contact.ID
	for i, id := range ids {
		s.observe(string(t), start, errs[i])
		if errs[i] == nil && t.Erasing() && results[i].EventID != "" {
			erased = append(erased, id)
		}
	}
	if len(erased) > 0 {
		// Should this fail, the erasure projection destroys the keys when it reads the tombstones.
		if err := s.vault.DestroyMany(ctx, workspace, erased); err != nil {
			s.log.Error("destroying data keys failed; the erasure projection will retry", "contacts", len(erased), "err", err)
		}
	}
	return results, errs
}

// transitionCommand is the command of a lifecycle transition.
func transitionCommand(t Transition, in TransitionInput, meta Meta) command {
	return func(l loaded, p contact.Policy, now time.Time) error {
		switch t {
		case Archive:
			return l.c.Archive(in.Reason, meta.Actor, now)
		case Unarchive:
			return l.c.Unarchive(in.Reason, meta.Actor, now)
		case Trash:
			return l.c.Trash(in.Reason, p, meta.Actor, now)
		case Restore:
			if in.KeepBoth {
				return l.c.RestoreKeepingBoth(in.Reason, p, meta.Actor, now)
			}
			return l.c.Restore(in.Reason, p, meta.Actor, now)
		case Purge, Anonymize:
			er := contact.Erasure{Reason: in.Reason, Request: in.Request, Trigger: in.Trigger, KeyID: l.key.KeyID}
			if er.Trigger == "" {
				er.Trigger = contact.TriggerRequest
			}
			if er.Trigger == contact.TriggerRetention {
				er.RetentionDays = p.RetentionDays()
			}
			if er.KeyID == "" {
				er.KeyID = "destroyed"
			}
			if t == Purge {
				return l.c.Purge(er, p, meta.Actor, now)
			}
			return l.c.Anonymize(er, p, meta.Actor, now)
		}
		return fmt.Errorf("unknown transition %q", t)
	}
}

// erased destroys the key of a contact whose tombstone is in the log.
// Should this fail, the erasure projection destroys it when it reads the
// tombstone. Reaching the store's own copies of the deleted bytes
// (PostgreSQL VACUUM, SQLite WAL truncation) is the projection runner's
// part: it compacts after committing a batch that erased (projections.Compacter),
// once the views' rows are gone too.
func (s *core) erased(ctx context.Context, workspace string, id contact.ID) {
	if err := s.vault.Destroy(ctx, workspace, id); err != nil {
		s.log.Error("destroying a data key failed; the erasure projection will retry", "contact", id.String(), "err", err)
	}
}

// Get returns a contact in any state, purged ones included (as a tombstone).
func (s *Contacts) Get(ctx context.Context, workspace string, id contact.ID) (View, error) {
	return s.get(ctx, workspace, id)
}

func (s *core) get(ctx context.Context, workspace string, id contact.ID) (View, error) {
	l, err := s.load(ctx, workspace, id)
	if err != nil {
		return View{}, err
	}
	p, err := s.policy(ctx, workspace)
	if err != nil {
		return View{}, err
	}
	return s.view(l.c, p, l.recs[len(l.recs)-1].Position), nil
}

// HistoryEntry is one event of a contact's trail, as compliance staff read it.
type HistoryEntry struct {
	Record kernel.Record
	// Personal is the decrypted personal part, or nil when the event has none
	// or its key is destroyed.
	Personal []byte
	// Shredded is true when the event has a personal part that can no longer be read.
	Shredded bool
}

// History returns a contact's events in order, with personal parts
// decrypted while the key exists and marked shredded after.
func (s *Audit) History(ctx context.Context, workspace string, id contact.ID) ([]HistoryEntry, error) {
	t, err := s.Trail(ctx, workspace, id, time.Time{}, 0)
	return t.Entries, err
}

// TagIndex returns the blind index of a tag, as the views hold it: tags are
// free text, so the views' indexed column never holds one in clear (a GIN
// index keeps every value it ever saw until it is rebuilt).
func TagIndex(b shred.BlindIndex, tag string) string { return b.Of("tag", strings.TrimSpace(tag)) }

// Page is one page of a view.
type Page struct {
	Items []View
	Next  *Cursor
}

// List returns one page of a view. It first waits until the view's
// projection has applied every event committed before the call, so a client
// reads its own writes; minPos asks for at least that position too.
func (s *Contacts) List(ctx context.Context, q ListQuery, minPos kernel.Position, email, phone string) (Page, error) {
	if _, ok := Views[q.View]; !ok {
		return Page{}, kernel.Invalid(kernel.FieldError{Field: "view", Message: "must be active, archived, trash or anonymized"})
	}
	head, err := s.events.Head(ctx)
	if err != nil {
		return Page{}, err
	}
	if head.Less(minPos) {
		// Every position a command returned is at or before the head: this
		// one is from elsewhere, and waiting for it would only time out.
		return Page{}, kernel.Invalid(kernel.FieldError{Field: "min_position", Message: "is beyond the log's head: use a position a command of this service returned"})
	}
	if err := s.progress.WaitFor(ctx, q.View, head); err != nil {
		return Page{}, err
	}
	if email != "" || phone != "" || q.Tag != "" {
		b, err := s.vault.BlindIndex(ctx, q.Workspace)
		if err != nil {
			return Page{}, err
		}
		q.EmailIndex = b.Of("email", contact.NormalizeEmail(email))
		q.PhoneIndex = b.Of("phone", contact.NormalizePhone(phone))
		q.TagIndex, q.Tag = TagIndex(b, q.Tag), ""
	}
	p, err := s.policy(ctx, q.Workspace)
	if err != nil {
		return Page{}, err
	}
	limit := q.Limit
	q.Limit++
	items, err := s.views.List(ctx, q)
	if err != nil {
		return Page{}, err
	}
	var page Page
	for i, it := range items {
		if i == limit {
			prev := items[i-1]
			page.Next = &Cursor{SortAt: prev.SortAt, ID: prev.Contact.ID.String()}
			break
		}
		c := contact.FromSnapshot(it.Contact)
		page.Items = append(page.Items, s.view(c, p, kernel.Position{}))
	}
	return page, nil
}
