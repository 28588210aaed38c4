package kernel

import (
	"errors"
	"fmt"
)

// Code classifies an Error; the HTTP adapter maps each code to one status.
type Code string

// The codes of application errors.
const (
	CodeInvalid      Code = "invalid"      // the request is well formed but a value is not acceptable
	CodeBadRequest   Code = "bad_request"  // the request itself is malformed
	CodeNotFound     Code = "not_found"    // no such thing in the caller's workspace
	CodeGone         Code = "gone"         // it existed and was permanently erased
	CodeConflict     Code = "conflict"     // the lifecycle or a rule forbids it in the current state
	CodeConcurrency  Code = "concurrency"  // someone else changed it first
	CodeForbidden    Code = "forbidden"    // the caller's role or the workspace policy forbids it
	CodeUnauthorized Code = "unauthorized" // no valid credentials
	CodeTooLarge     Code = "too_large"    // the request is over a limit
	CodeMediaType    Code = "media_type"   // the body is of a media type the operation does not take
	CodeUnavailable  Code = "unavailable"  // try again later
)

// Error is the one coded error type of the application. Reason is a stable,
// machine-readable slug (it becomes the problem type); Message is safe to show
// to clients and never contains personal data.
type Error struct {
	Code    Code
	Reason  string
	Message string
	// Fields names invalid fields and why, without their values.
	Fields []FieldError
}

// FieldError says which field of a request is invalid and why. It never holds the value.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Is reports whether target is an *Error with the same reason, so that
// errors.Is(err, ErrNotEditable) holds for every instance of that error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Reason == e.Reason
}

// The errors of the domain and its ports. Compare with errors.Is.
var (
	ErrNotFound          = &Error{Code: CodeNotFound, Reason: "not-found", Message: "contact not found"}
	ErrAlreadyExists     = &Error{Code: CodeConflict, Reason: "already-exists", Message: "contact already exists"}
	ErrConcurrency       = &Error{Code: CodeConcurrency, Reason: "concurrent-modification", Message: "the contact was changed by someone else; reload and retry"}
	ErrRoleNotAllowed    = &Error{Code: CodeForbidden, Reason: "role-not-allowed", Message: "your role is not allowed to do this"}
	ErrInvalid           = &Error{Code: CodeInvalid, Reason: "validation-failed", Message: "the request has invalid values"}
	ErrWorkspaceNotFound = &Error{Code: CodeNotFound, Reason: "workspace-not-found", Message: "workspace not found"}
)

// Errorf returns a new error of the same code and reason as base, with its own message.
func Errorf(base *Error, format string, args ...any) *Error {
	return &Error{Code: base.Code, Reason: base.Reason, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns a validation error naming the invalid fields.
func Invalid(fields ...FieldError) *Error {
	e := *ErrInvalid
	e.Fields = fields
	if len(fields) == 1 {
		e.Message = fields[0].Field + ": " + fields[0].Message
	}
	return &e
}

// ErrorCode returns the code of err if it is (or wraps) an *Error, else "".
func ErrorCode(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
