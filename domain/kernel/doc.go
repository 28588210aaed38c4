// Package kernel is the shared kernel of the ledger: the concepts that every
// other package speaks in, whichever aggregate it handles (contacts, holds,
// restore jobs, webhooks, the feed).
//
//   - the one coded error type of the application (Error, Code, Errorf,
//     Invalid) and the errors every port and aggregate shares (ErrNotFound,
//     ErrConcurrency, ErrInvalid, ...); the HTTP adapter maps each Code to one
//     status;
//   - who acts: Actor and Role;
//   - the log: Position, Record, the hash chain (ChainHash, ChainVerifier) and
//     the EventStore port that every event-store adapter implements.
//
// Like the rest of domain/, it does no I/O.
package kernel
