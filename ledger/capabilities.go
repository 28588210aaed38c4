package ledger

// The service is split by capability. Each capability is a type of its own,
// with its methods in its own files, on the shared core; Service composes
// them. Adapters depend on small interfaces they declare themselves (the
// methods they call), which these types satisfy.
type (
	// Contacts runs the commands and queries on contacts: create, update,
	// lifecycle transitions (one, many, bulk), tags, notes, lists, links,
	// spam marks, reads, history and erasure state.
	// Files: service.go, associations.go, bulk.go, answers.go.
	Contacts struct{ *core }
	// Access keeps the directory: workspaces, their policy, tokens and
	// authentication, the console's sessions, and the rotation of data keys.
	// Files: tokens.go, workspaces.go, sessions.go.
	Access struct{ *core }
	// Audit reads the log for auditors (trails, the audit log, chain
	// verification) and signs, serves and re-applies erasure receipts.
	// Files: audit.go, receipts.go, reapply.go.
	Audit struct{ *core }
	// Jobs starts, previews, cancels, reports, lists and runs restore jobs.
	// Files: jobs.go, jobrunner.go, jobstatus.go, jobhistory.go.
	Jobs struct{ *core }
	// Imports imports contacts from a file's rows.
	// File: importer.go.
	Imports struct{ *core }
	// Retention purges what stayed in trash past the workspace's window.
	// File: retention.go.
	Retention struct {
		*core
		contacts *Contacts
		holds    *LegalHolds
	}
	// LegalHolds places and releases legal holds on contacts and workspaces.
	// File: holds.go.
	LegalHolds struct{ *core }
	// Subscriptions keeps webhook subscriptions, their secrets, status,
	// deliveries and replays.
	// File: webhooks.go.
	Subscriptions struct {
		*core
		feed *ChangeFeed
	}
	// ChangeFeed serves the public change feed and renders log records as
	// public events.
	// File: feed.go.
	ChangeFeed struct{ *core }
)

// Service is every capability on one core. Embedding keeps call sites
// short (svc.Create, svc.Import); adapters should hold the capability, or
// an interface of their own, rather than the whole Service.
type Service struct {
	*core
	*Contacts
	*Access
	*Audit
	*Jobs
	*Imports
	*Retention
	*LegalHolds
	*Subscriptions
	*ChangeFeed
}

// New returns a Service.
func New(o Options) *Service {
	c := newCore(o)
	contacts, holds, feed := &Contacts{c}, &LegalHolds{c}, &ChangeFeed{c}
	return &Service{
		core:          c,
		Contacts:      contacts,
		Access:        &Access{c},
		Audit:         &Audit{c},
		Jobs:          &Jobs{c},
		Imports:       &Imports{c},
		Retention:     &Retention{core: c, contacts: contacts, holds: holds},
		LegalHolds:    holds,
		Subscriptions: &Subscriptions{core: c, feed: feed},
		ChangeFeed:    feed,
	}
}
