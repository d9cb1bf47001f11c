package tests

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	lumber "github.com/elastic/go-lumber/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lumberServer is a Logstash beats input stand-in: Elastic's go-lumber
// server speaking the lumberjack v2 protocol libbeat's logstash output uses.
type lumberServer struct {
	addr    string
	mu      sync.Mutex
	events  []Event
	batches int
}

func startLumber(t *testing.T) *lumberServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv, err := lumber.NewWithListener(l, lumber.V2(true))
	require.NoError(t, err)
	ls := &lumberServer{addr: l.Addr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for batch := range srv.ReceiveChan() {
			ls.mu.Lock()
			ls.batches++
			for _, e := range batch.Events {
				if m, ok := e.(map[string]interface{}); ok {
					ls.events = append(ls.events, Event(m))
				}
			}
			ls.mu.Unlock()
			batch.ACK()
		}
	}()
	t.Cleanup(func() { srv.Close(); <-done })
	return ls
}

func (ls *lumberServer) Events() []Event {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return append([]Event(nil), ls.events...)
}

// TestLogstashOutput delivers the events of real loopback connections over
// the lumberjack protocol to a go-lumber server that ACKs each batch, and
// checks them field by field and in the agent's output counters.
func TestLogstashOutput(t *testing.T) {
	t.Parallel()
	s := startScenario(t, "127.0.0.1", "127.0.0.2")
	ls := startLumber(t)
	mon := freePort(t)
	a := outputAgent(t, "  poll_interval: 200ms\n  aggregation: 1m",
		fmt.Sprintf("output.logstash:\n  hosts: [%q]\n", ls.addr), s.only(), monitoring(mon))
	eventually(t, a, 60*time.Second, "scenario events at the lumberjack server", func() bool { return s.complete(ls.Events()) })
	s.check(t, ls.Events())
	for _, e := range ls.Events() {
		// The logstash output adds @metadata for routing in Logstash.
		assert.Equal(t, "connbeat", e.Str("@metadata.beat"))
		assert.Equal(t, version(t), e.Str("@metadata.version"))
	}
	eventually(t, a, 30*time.Second, "ACKed events counted", func() bool {
		return agentStats(t, mon).sofar("libbeat.output.events.acked") >= float64(len(ls.Events()))
	})
	assert.Zero(t, agentStats(t, mon).num(t, "libbeat.output.events.failed"))
}
