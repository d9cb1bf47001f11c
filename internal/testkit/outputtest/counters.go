// Package outputtest holds what the tests of connbeat's own outputs share:
// an outputs.Observer that counts what an output reports to libbeat.
package outputtest

import (
	"sync"
	"time"
)

// Counters implements libbeat's outputs.Observer and keeps the counts the
// output tests assert on. Read the fields once the output is idle.
type Counters struct {
	mu          sync.Mutex
	Batches     int
	Acked       int
	Retryable   int
	Permanent   int
	TooMany     int
	WriteErrors int
	Bytes       int
}

func (c *Counters) add(f *int, n int) { c.mu.Lock(); *f += n; c.mu.Unlock() }

func (c *Counters) NewBatch(int)                  { c.add(&c.Batches, 1) }
func (c *Counters) RetryableErrors(n int)         { c.add(&c.Retryable, n) }
func (c *Counters) PermanentErrors(n int)         { c.add(&c.Permanent, n) }
func (c *Counters) DuplicateEvents(int)           {}
func (c *Counters) DeadLetterEvents(int)          {}
func (c *Counters) AckedEvents(n int)             { c.add(&c.Acked, n) }
func (c *Counters) ErrTooMany(n int)              { c.add(&c.TooMany, n) }
func (c *Counters) FailureStoreEvents(int)        {}
func (c *Counters) BatchSplit()                   {}
func (c *Counters) WriteError(error)              { c.add(&c.WriteErrors, 1) }
func (c *Counters) WriteBytes(n int)              { c.add(&c.Bytes, n) }
func (c *Counters) ReadError(error)               {}
func (c *Counters) ReadBytes(int)                 {}
func (c *Counters) ReportLatency(_ time.Duration) {}
