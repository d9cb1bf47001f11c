package zeromq

import (
	"io"
	"net"
	"testing"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/beats/v7/libbeat/outputs/outest"
	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
)

// BenchmarkPubBurst publishes batches of batchSize events to one zmq4 SUB
// subscriber that reads as fast as it can, with the default send_hwm, and
// reports the share of events dropped at the HWM.
func BenchmarkPubBurst(b *testing.B) {
	c, m := newTestClient(b, yamlFor("tcp://127.0.0.1:0"))
	s := zmq4.NewSub(b.Context())
	defer s.Close()
	if err := s.Dial(c.boundEndpoint()); err != nil {
		b.Fatal(err)
	}
	_ = s.SetOption(zmq4.OptionSubscribe, "")
	go func() {
		for {
			if _, err := s.Recv(); err != nil {
				return
			}
		}
	}()
	waitSubscribed(b, c, "", 1)
	publishBatches(b, c)
	reportRates(b, m)
}

func newBatch(evs []beat.Event) *outest.Batch { return outest.NewBatch(evs...) }

// publishBatches publishes b.N batches of batchSize events, timed.
func publishBatches(b *testing.B, c *client) {
	evs := make([]beat.Event, batchSize)
	for i := range evs {
		evs[i] = event(i, "connection", "web-1")
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = c.Publish(b.Context(), newBatch(evs))
	}
}

// reportRates stops the timer and reports the share of events dropped and
// the events published a second.
func reportRates(b *testing.B, m metrics) {
	b.StopTimer()
	total := float64(b.N * batchSize)
	b.ReportMetric(float64(m.get("events.dropped"))/total*100, "%dropped")
	b.ReportMetric(total/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkPubWriter measures the output alone: the subscriber completes
// the handshake, subscribes to everything and discards the bytes unread.
func BenchmarkPubWriter(b *testing.B) {
	c, m := newTestClient(b, yamlFor("tcp://127.0.0.1:0", "send_hwm: 10000000"))
	conn, err := net.Dial("tcp", c.socket().ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if _, err := zmq4.Open(conn, null.Security(), zmq4.Sub, nil, false, nil); err != nil {
		b.Fatal(err)
	}
	_, _ = conn.Write([]byte{0, 1, 1})
	go io.Copy(io.Discard, conn)
	waitSubscribed(b, c, "", 1)
	publishBatches(b, c)
	p := c.socket().live()[0]
	waitFor(b, "queue written", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.pending == 0
	})
	reportRates(b, m)
}
