package model

import (
	"errors"
	"fmt"
)

// UnavailableError says a source or input cannot run on this host (a
// missing kernel feature or privilege). Callers log it once and fall back
// instead of failing every poll.
type UnavailableError struct {
	Source string
	Err    error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("socket source %s unavailable: %v", e.Source, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// IsUnavailable reports whether err says a source cannot run here.
func IsUnavailable(err error) bool {
	var u *UnavailableError
	return errors.As(err, &u)
}
