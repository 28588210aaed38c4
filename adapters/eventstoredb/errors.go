package eventstoredb

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/contactledger/ledger/domain/kernel"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrUnavailable is the error of an operation that EventStoreDB could not
// serve right now (node down, no leader, timeout, connection lost). The
// outcome of an append that fails with it is unknown; retrying it with the
// same records is safe, since the event ids make the append idempotent.
var ErrUnavailable = &kernel.Error{Code: kernel.CodeUnavailable, Reason: "log-unavailable",
	Message: "the event log is unavailable; retry shortly"}

// ErrAccess is the error of an operation EventStoreDB refused for want of
// rights: the user in the connection string must be allowed to write
// contact streams and read $all (a member of $ops or $admins).
var ErrAccess = errors.New("eventstoredb refused access: check the user in the connection string (it must be allowed to write contact streams and read $all)")

// code returns the code of the *esdb.Error in err's chain. esdb.FromError
// is not used: it misses wrapped errors, which several client calls return.
func code(err error) (esdb.ErrorCode, bool) {
	var e *esdb.Error
	if errors.As(err, &e) {
		return e.Code(), true
	}
	return esdb.ErrorCodeUnknown, false
}

func hasCode(err error, c esdb.ErrorCode) bool {
	got, ok := code(err)
	return ok && got == c
}

// translate maps a client error to the domain's, keeping the native error
// in the chain after op's context. ctx is the operation's: a call cancelled
// by its caller reports the context's error.
func translate(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.Canceled) {
		return wrap2(op, ctx.Err(), err)
	}
	var domain *kernel.Error
	if errors.As(err, &domain) || errors.Is(err, errClosed) {
		return wrap(op, err)
	}
	c, ok := code(err)
	switch {
	case ok && c == esdb.ErrorCodeWrongExpectedVersion:
		return wrap2(op, kernel.ErrConcurrency, err)
	case ok && c == esdb.ErrorCodeResourceNotFound:
		return wrap2(op, kernel.ErrNotFound, err)
	case ok && c == esdb.ErrorCodeStreamDeleted:
		// Only an operator can hard-delete a contact stream; the ledger never does.
		return wrap2(op, kernel.ErrNotFound, err)
	case ok && (c == esdb.ErrorCodeAccessDenied || c == esdb.ErrorCodeUnauthenticated):
		return wrap2(op, ErrAccess, err)
	case ok && (c == esdb.ErrorUnavailable || c == esdb.ErrorCodeNotLeader || c == esdb.ErrorCodeDeadlineExceeded ||
		c == esdb.ErrorAborted || c == esdb.ErrorCodeConnectionClosed):
		return wrap2(op, ErrUnavailable, err)
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		// The client lost the append stream before the answer.
		return wrap2(op, ErrUnavailable, err)
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted:
		return wrap2(op, ErrUnavailable, err)
	case codes.PermissionDenied, codes.Unauthenticated:
		return wrap2(op, ErrAccess, err)
	}
	return wrap(op, err)
}

func wrap(op string, err error) error { return fmt.Errorf("%s: %w", op, err) }

// wrap2 puts the domain error first, so that it is what the message and
// errors.As show first, and keeps the native one in the chain.
func wrap2(op string, domain, native error) error {
	return fmt.Errorf("%s: %w: %w", op, domain, native)
}
