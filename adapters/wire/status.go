package wire

import (
	"net/http"

	"github.com/contactledger/ledger/domain/kernel"
)

// statuses is the one table from application error codes to HTTP
// statuses: the API's problems and the console's error pages answer with
// the same status for the same error.
var statuses = map[kernel.Code]int{
	kernel.CodeBadRequest:   http.StatusBadRequest,
	kernel.CodeInvalid:      http.StatusUnprocessableEntity,
	kernel.CodeNotFound:     http.StatusNotFound,
	kernel.CodeGone:         http.StatusGone,
	kernel.CodeConflict:     http.StatusConflict,
	kernel.CodeConcurrency:  http.StatusConflict, // the API answers 412 when the request carried If-Match
	kernel.CodeForbidden:    http.StatusForbidden,
	kernel.CodeUnauthorized: http.StatusUnauthorized,
	kernel.CodeTooLarge:     http.StatusRequestEntityTooLarge,
	kernel.CodeMediaType:    http.StatusUnsupportedMediaType,
	kernel.CodeUnavailable:  http.StatusServiceUnavailable,
}

// HTTPStatus returns the HTTP status of an application error code, or 0
// for a code without one (an internal error).
func HTTPStatus(code kernel.Code) int { return statuses[code] }
