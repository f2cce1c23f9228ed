package ipt

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Error is a refusal: the errno ip_tables would return, and why.
type Error struct {
	Errno  unix.Errno
	Reason string
}

func (e *Error) Error() string { return e.Reason + " (" + e.Errno.Error() + ")" }

// Unwrap makes errors.Is(err, unix.EINVAL) work.
func (e *Error) Unwrap() error { return e.Errno }

func errorf(errno unix.Errno, format string, args ...any) *Error {
	return &Error{Errno: errno, Reason: fmt.Sprintf(format, args...)}
}

// ErrnoOf is the errno that err stands for: the Errno of an *Error or of a
// unix.Errno that err wraps; EINVAL for any other non-nil error, 0 for nil.
func ErrnoOf(err error) unix.Errno {
	if err == nil {
		return 0
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Errno
	}
	var n unix.Errno
	if errors.As(err, &n) && n != 0 {
		return n
	}
	return unix.EINVAL
}

// Short names for the errnos ip_tables uses.
const (
	einval          = unix.EINVAL
	eloop           = unix.ELOOP
	enoent          = unix.ENOENT
	enomem          = unix.ENOMEM
	eprototype      = unix.EPROTOTYPE
	eprotonosupport = unix.EPROTONOSUPPORT
)
