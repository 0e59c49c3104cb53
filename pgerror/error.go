package pgerror

import (
	"errors"
	"fmt"
)

// Error is an error with a SQLSTATE. Severity is ERROR unless set otherwise.
type Error struct {
	Code     string // SQLSTATE, e.g. "42501"
	ID       string // catalogue ID such as "DP001"; empty for errors that are not dpproxy refusals
	Message  string // lower-case, specific, as Postgres's own messages
	Detail   string
	Hint     string
	Position int32 // 1-based character position in the statement; 0 when unknown
	Severity string
	cause    error
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.cause }

// Newf returns an error with the given SQLSTATE and message.
func Newf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrapf returns an error with the given SQLSTATE whose cause is err.
func Wrapf(err error, code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), cause: err}
}

// WithHint sets the hint and returns e.
func (e *Error) WithHint(format string, args ...any) *Error {
	e.Hint = fmt.Sprintf(format, args...)
	return e
}

// WithDetail sets the detail and returns e.
func (e *Error) WithDetail(format string, args ...any) *Error {
	e.Detail = fmt.Sprintf(format, args...)
	return e
}

// WithPosition sets the 1-based statement position and returns e.
func (e *Error) WithPosition(pos int32) *Error {
	e.Position = pos
	return e
}

// Code returns the SQLSTATE of the first *Error in err's chain, or
// CodeInternalError when there is none: an error dpproxy did not classify is
// an internal error, never a success.
func Code(err error) string {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return CodeInternalError
}

// As returns the first *Error in err's chain. Errors without one become an
// internal error whose message does not reveal the cause, since causes can
// carry upstream text.
func As(err error) *Error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	return &Error{Code: CodeInternalError, Message: "internal error in dpproxy", cause: err}
}
