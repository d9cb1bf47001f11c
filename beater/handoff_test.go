package beater

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/elastic-agent-libs/mapstr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gatedClient is a beat.Client whose Publish waits for a token on gate, as
// libbeat's does while its queue is full; Close makes waiting Publishes
// return, as closing libbeat's client does.
type gatedClient struct {
	gate    chan struct{}
	entered chan struct{}
	closed  chan struct{}
	once    sync.Once

	mu  sync.Mutex
	got []int
}

func newGatedClient() *gatedClient {
	return &gatedClient{gate: make(chan struct{}), entered: make(chan struct{}, 1024), closed: make(chan struct{})}
}

func (c *gatedClient) Publish(e beat.Event) {
	c.entered <- struct{}{}
	select {
	case <-c.gate:
	case <-c.closed:
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, e.Fields["n"].(int))
}

func (c *gatedClient) PublishAll(es []beat.Event) {
	for _, e := range es {
		c.Publish(e)
	}
}

func (c *gatedClient) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// open lets every Publish through from now on.
func (c *gatedClient) open() { close(c.gate) }

func (c *gatedClient) published() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int(nil), c.got...)
}

func ev(n int) beat.Event { return beat.Event{Fields: mapstr.M{"n": n}} }

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// The output is down: the goroutine holds one event in Publish, the buffer
// the next size; every further event is dropped, and only the first of them
// waits for the stall to be noticed.
func TestHandoffDropsWhileStalled(t *testing.T) {
	const size, n = 8, 100
	const stall = 200 * time.Millisecond
	c := newGatedClient()
	var dropped atomic.Int64
	h := newHandoff(c, size, stall, func() { dropped.Add(1) })

	h.Publish(ev(0))
	<-c.entered // the goroutine is waiting in Publish
	for i := 1; i <= size; i++ {
		h.Publish(ev(i))
	}
	require.Zero(t, dropped.Load(), "the buffer takes size events")
	start := time.Now()
	h.Publish(ev(size + 1))
	assert.GreaterOrEqual(t, time.Since(start), stall, "the first event that does not fit waits for the stall")
	require.Equal(t, int64(1), dropped.Load())

	// Stalled: the rest are dropped without waiting. With a stall of an
	// hour from here on, a Publish that waited would hang the test.
	h.stall = time.Hour
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := size + 2; i < n; i++ {
			h.Publish(ev(i))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "a Publish waited while the output was stalled")
	}
	assert.Equal(t, int64(n-1-size), dropped.Load())

	// The output comes back: what was held is delivered in order, and new
	// events go through again.
	c.open()
	require.Eventually(t, func() bool { return len(c.published()) == size+1 }, 30*time.Second, time.Millisecond)
	for i := n; i < n+size; i++ {
		h.Publish(ev(i))
	}
	h.Close(time.Minute, func() { _ = c.Close() })
	assert.Equal(t, append(seq(0, size+1), seq(n, n+size)...), c.published())
	assert.Equal(t, int64(n-1-size), dropped.Load(), "nothing dropped once the output takes events")
}

// A slow output that keeps taking events slows the poll down instead of
// losing events.
func TestHandoffWaitsForSlowOutput(t *testing.T) {
	const size, n = 4, 200
	c := newGatedClient()
	var dropped atomic.Int64
	h := newHandoff(c, size, 10*time.Second, func() { dropped.Add(1) })
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case c.gate <- struct{}{}:
				time.Sleep(time.Millisecond)
			case <-stop:
				return
			}
		}
	}()
	for i := 0; i < n; i++ {
		h.Publish(ev(i))
	}
	h.Close(time.Minute, func() { _ = c.Close() })
	assert.Zero(t, dropped.Load())
	assert.Equal(t, seq(0, n), c.published())
}

// Close delivers what the buffer holds, and when the output never takes it,
// closes the client after the wait so that the goroutine ends.
func TestHandoffClose(t *testing.T) {
	t.Run("output up", func(t *testing.T) {
		c := newGatedClient()
		c.open()
		h := newHandoff(c, 64, time.Minute, func() { t.Error("dropped") })
		for i := 0; i < 50; i++ {
			h.Publish(ev(i))
		}
		forced := false
		assert.True(t, h.Close(time.Minute, func() { forced = true; _ = c.Close() }))
		assert.False(t, forced, "the client is not closed under a draining hand-off")
		assert.Equal(t, seq(0, 50), c.published())
	})
	t.Run("output down", func(t *testing.T) {
		c := newGatedClient()
		h := newHandoff(c, 64, time.Minute, func() { t.Error("dropped") })
		for i := 0; i < 10; i++ {
			h.Publish(ev(i))
		}
		done := make(chan struct{})
		go func() {
			assert.False(t, h.Close(10*time.Millisecond, func() { _ = c.Close() }))
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			require.FailNow(t, "Close did not return after closing the client")
		}
		assert.Empty(t, c.published())
	})
}
