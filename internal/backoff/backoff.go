// Package backoff is the `backoff` setting of connbeat's own outputs: how
// long an output waits before reconnecting, from Init doubling up to Max.
package backoff

import (
	"fmt"
	"time"
)

// Config is an output's `backoff` section.
type Config struct {
	Init time.Duration `config:"init"`
	Max  time.Duration `config:"max"`
}

// Default waits 1 s after the first failure and at most a minute.
func Default() Config { return Config{Init: time.Second, Max: time.Minute} }

// Check returns an error naming the section (e.g. "output.http.backoff")
// unless Init is positive and Max is at least Init.
func (c Config) Check(section string) error {
	if c.Init <= 0 || c.Max < c.Init {
		return fmt.Errorf("%s: init must be positive and max >= init (got init %s, max %s)", section, c.Init, c.Max)
	}
	return nil
}
