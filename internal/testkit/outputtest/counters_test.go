package outputtest

import (
	"sync"
	"testing"

	"github.com/elastic/beats/v7/libbeat/outputs"
	"github.com/stretchr/testify/assert"
)

func TestCountersObserve(t *testing.T) {
	var c Counters
	var obs outputs.Observer = &c
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			obs.NewBatch(3)
			obs.AckedEvents(2)
			obs.RetryableErrors(1)
			obs.PermanentErrors(1)
			obs.ErrTooMany(1)
			obs.WriteError(nil)
			obs.WriteBytes(10)
		}()
	}
	wg.Wait()
	got := []int{c.Batches, c.Acked, c.Retryable, c.Permanent, c.TooMany, c.WriteErrors, c.Bytes}
	assert.Equal(t, []int{4, 8, 4, 4, 4, 4, 40}, got)
}
