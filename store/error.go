package store

import (
	"errors"
	"fmt"
)

// Error codes: what kind of failure an *Error is. Handlers map each to an
// HTTP status in one table; callers choose by code, never by message.
const (
	// ENOTFOUND: the job is not in the log.
	ENOTFOUND = "not_found"
	// EINVALID: the input was refused before any write. Repeating the same
	// call will not help.
	EINVALID = "invalid"
	// EUNAVAILABLE: the store could not commit (the disk is full, the file
	// is read-only, the database is unreachable) or is closed. Nothing was
	// stored; retrying later may help.
	EUNAVAILABLE = "unavailable"
)

// Error is the store's one error type. Message is safe to show to the
// client that made the request, except for EUNAVAILABLE, whose message
// carries the backend's own text for the log.
type Error struct {
	Code    string
	Message string
}

// Error returns the message, or a text for the code when there is none.
func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return codeText(e.Code)
}

// Is makes errors.Is(err, ErrNotFound) and the other sentinels match any
// *Error with their code: a sentinel is an *Error with no message.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

func codeText(code string) string {
	switch code {
	case ENOTFOUND:
		return "job not found"
	case EINVALID:
		return "invalid input"
	case EUNAVAILABLE:
		return "store unavailable"
	}
	return code
}

// Sentinels for errors.Is: each matches every *Error with its code.
var (
	// ErrNotFound matches ENOTFOUND errors.
	ErrNotFound error = &Error{Code: ENOTFOUND}
	// ErrInvalid matches EINVALID errors.
	ErrInvalid error = &Error{Code: EINVALID}
	// ErrUnavailable matches EUNAVAILABLE errors.
	ErrUnavailable error = &Error{Code: EUNAVAILABLE}
)

// Errorf returns an *Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, or "" when
// there is none (an internal error).
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// ErrorMessage returns the message of the first *Error in err's chain, or
// "" when there is none.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Error()
	}
	return ""
}
