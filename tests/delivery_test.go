package tests

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/connbeat/connbeat/internal/testkit/rabbit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// metricsAtExit makes libbeat log its counters once, when it stops
// ("Total metrics").
const metricsAtExit = "logging.metrics.enabled: true\nlogging.metrics.period: 1h\n"

// totalMetrics returns the counters libbeat logged at exit.
func totalMetrics(t *testing.T, log string) Event {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `"message":"Total metrics"`) {
			continue
		}
		var ev Event
		require.NoError(t, json.Unmarshal([]byte(line), &ev), line)
		m, ok := ev.Get("monitoring.metrics").(map[string]interface{})
		require.True(t, ok, "no monitoring.metrics in %s", line)
		return Event(m)
	}
	t.Fatalf("no Total metrics line in the log:\n%s", tail(log, 4096))
	return nil
}

// count is a counter of totalMetrics; an absent one is 0 (libbeat logs
// only the counters that moved).
func (e Event) count(path string) int {
	v, _ := e.Get(path).(float64)
	return int(v)
}

// accounting is what the agent says it did with its events: published to
// libbeat's queue, acknowledged back to connbeat, and of those, acked
// (delivered) and dropped (given up, counted) by the output; plus the
// events connbeat dropped before the queue (queue_full: drop).
type accounting struct {
	published, acknowledged, acked, outputDropped, connbeatDropped int
}

func accountingOf(m Event) accounting {
	return accounting{
		published:       m.count("connbeat.events.published"),
		acknowledged:    m.count("connbeat.events.acknowledged"),
		acked:           m.count("libbeat.output.events.acked"),
		outputDropped:   m.count("libbeat.output.events.dropped"),
		connbeatDropped: m.count("connbeat.events.dropped"),
	}
}

// balanced reports whether nothing published was lost silently: every
// event was acknowledged, either delivered or dropped with a count.
func (a accounting) balanced() bool {
	return a.published == a.acknowledged && a.acknowledged == a.acked+a.outputDropped
}

// stopWithin sends sig and returns the exit code and how long the agent
// took to exit.
func stopWithin(t *testing.T, a *Agent, sig syscall.Signal) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	code := a.Stop(sig)
	return code, time.Since(start)
}

func httpOutput(addr string, extra ...string) string {
	return fmt.Sprintf("output.http:\n  hosts: [\"http://%s/ingest\"]\n  backoff: {init: 200ms, max: 1s}\n  timeout: 10s\n%s",
		addr, strings.Join(extra, "\n"))
}

// TestSIGTERMDrainsSlowHTTP: SIGTERM while the endpoint takes 3 s to
// answer a batch. libbeat closes the output after its fixed 1 s wait; the
// drain before it (connbeat.shutdown_timeout, 10 s by default) lets the
// answer arrive: every published event is acknowledged, none lost.
func TestSIGTERMDrainsSlowHTTP(t *testing.T) {
	t.Parallel()
	const ip, n = "127.0.0.21", 20
	sink := newHTTPSink(t)
	proxy := startFaultProxy(t, sink.addr, slow, 3*time.Second)
	lns := ownListeners(t, ip, n)
	a := outputAgent(t, "  poll_interval: 200ms\n  aggregation: 10m", httpOutput(proxy.Addr()), keepOwn(ip), metricsAtExit)

	eventually(t, a, 60*time.Second, "the batch at the endpoint, its answer held by the proxy", func() bool {
		return len(listenerCounts(sink.events(), ip)) == n
	})
	code, took := stopWithin(t, a, syscall.SIGTERM)
	assert.Equal(t, 0, code)
	assert.Less(t, took, 15*time.Second, "the drain is bounded by shutdown_timeout")

	got := accountingOf(totalMetrics(t, a.Stderr()))
	assert.Equal(t, accounting{published: n, acknowledged: n, acked: n}, got, "every published event acknowledged before the output closed")
	assert.Contains(t, a.Stderr(), "every published event was acknowledged")
	assert.True(t, allArrived(listenerCounts(sink.events(), ip), lns))
}

// target is one of connbeat's outputs with the server it ships to, for the
// fault tests: the proxy forwards to upstream, the agent's output section
// points at the proxy, and received is what reached the other end.
type target struct {
	// delay is how long the proxy holds each chunk of an answer when the
	// server is slow: the AMQP handshake takes six round trips.
	delay    time.Duration
	upstream string
	output   func(proxy string) string
	received func() []Event
}

func httpTarget(t *testing.T) target {
	sink := newHTTPSink(t)
	return target{
		delay:    3 * time.Second,
		upstream: sink.addr,
		output:   func(p string) string { return httpOutput(p, "  timeout: 5s") },
		received: sink.events,
	}
}

func amqpTarget(b *rabbit.Broker, q *amqpQueue) target {
	return target{
		delay:    500 * time.Millisecond,
		upstream: fmt.Sprintf("127.0.0.1:%d", b.Port),
		output: func(p string) string {
			return amqpOutput("amqp://"+p+"/", "  timeout: 5s\n  confirm_timeout: 5s\n  heartbeat: 0s")
		},
		received: q.read,
	}
}

// zeromqTarget is the output binding a PUSH socket on a fixed port and a
// PULL consumer that connects to it through the proxy, again after every
// lost connection.
func zeromqTarget(t *testing.T) (target, func(proxy string)) {
	port := freePort(t)
	var mu sync.Mutex
	var got []Event
	tg := target{
		delay:    3 * time.Second,
		upstream: fmt.Sprintf("127.0.0.1:%d", port),
		output: func(string) string {
			return fmt.Sprintf("output.zeromq:\n  endpoint: \"tcp://127.0.0.1:%d\"\n  mode: push\n  send_timeout: 5s", port)
		},
		received: func() []Event {
			mu.Lock()
			defer mu.Unlock()
			return append([]Event(nil), got...)
		},
	}
	consume := func(proxy string) {
		go func() {
			for t.Context().Err() == nil {
				pullOnce(t, proxy, func(ev Event) {
					mu.Lock()
					got = append(got, ev)
					mu.Unlock()
				})
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}
	return tg, consume
}

// pullOnce is a ZMTP 3.0 PULL peer on one connection: greeting and READY,
// then two-frame messages (topic, JSON event) until the connection ends.
func pullOnce(t *testing.T, addr string, got func(Event)) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer c.Close()
	stop := context.AfterFunc(t.Context(), func() { c.Close() })
	defer stop()
	greeting := make([]byte, 64)
	greeting[0], greeting[9], greeting[10] = 0xff, 0x7f, 3
	copy(greeting[12:], "NULL")
	ready := append([]byte{5}, "READY"...)
	ready = append(append(ready, 11), "Socket-Type"...)
	ready = append(binary.BigEndian.AppendUint32(ready, 4), "PULL"...)
	// As libzmq does: READY only once the peer's greeting has arrived.
	if _, err := c.Write(greeting); err != nil {
		return
	}
	r := bufio.NewReader(c)
	if _, err := io.ReadFull(r, make([]byte, 64)); err != nil {
		return
	}
	if _, err := c.Write(append([]byte{0x04, byte(len(ready))}, ready...)); err != nil {
		return
	}
	var frames [][]byte
	for {
		hdr, err := r.ReadByte()
		if err != nil {
			return
		}
		var size uint64
		if hdr&0x02 != 0 {
			var b [8]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				return
			}
			size = binary.BigEndian.Uint64(b[:])
		} else {
			b, err := r.ReadByte()
			if err != nil {
				return
			}
			size = uint64(b)
		}
		if size > 1<<20 {
			return
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		if hdr&0x04 != 0 {
			continue // a command (the agent's READY)
		}
		frames = append(frames, body)
		if hdr&0x01 != 0 {
			continue // more frames of this message
		}
		var ev Event
		if len(frames) == 2 && json.Unmarshal(frames[1], &ev) == nil {
			got(ev)
		}
		frames = nil
	}
}

var unackedAtStop = regexp.MustCompile(`stopping with (\d+) events not acknowledged`)

// faultCase runs the agent against tg through a proxy injecting f, waits
// until it has published its n listeners and a batch is on its way, and
// sends sig. With SIGTERM it checks the accounting: every published event
// was acknowledged (delivered, or dropped and counted) or is counted as
// unacknowledged in the log, and every delivered one reached the server.
// With SIGKILL a second agent, fault gone, reports every listener again.
func faultCase(t *testing.T, tg target, consume func(string), ip string, f fault, sig syscall.Signal) {
	const n = 20
	lns := ownListeners(t, ip, n)
	proxy := startFaultProxy(t, tg.upstream, f, tg.delay)
	mon := freePort(t)
	cfg := func() *Agent {
		return outputAgent(t, "  poll_interval: 200ms\n  aggregation: 10m", tg.output(proxy.Addr()),
			keepOwn(ip), metricsAtExit, monitoring(mon))
	}
	a := cfg()
	if consume != nil {
		// The consumer connects to the agent's socket through the proxy.
		eventually(t, a, 60*time.Second, "the agent's socket up", func() bool {
			c, err := net.Dial("tcp", tg.upstream)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		consume(proxy.Addr())
	}
	eventually(t, a, 60*time.Second, "the listeners published", func() bool {
		published, _ := agentStats(t, mon).Get("connbeat.events.published").(float64)
		return published >= n
	})
	time.Sleep(500 * time.Millisecond) // a batch on its way through the fault

	if sig == syscall.SIGKILL {
		require.NoError(t, a.cmd.Process.Kill())
		<-a.done
		proxy.set(passThrough)
		before := len(tg.received())
		b := cfg()
		eventually(t, b, 60*time.Second, "every listener again from the restarted agent", func() bool {
			return allArrived(listenerCounts(tg.received()[before:], ip), lns)
		})
		assert.Equal(t, 0, b.Stop(syscall.SIGTERM))
		return
	}

	code, took := stopWithin(t, a, sig)
	assert.Equal(t, 0, code)
	assert.Less(t, took, 25*time.Second, "shutdown_timeout (10s) and the output's close (10s) bound the stop")
	log := a.Stderr()
	got := accountingOf(totalMetrics(t, log))
	unacked := 0
	if m := unackedAtStop.FindStringSubmatch(log); m != nil {
		unacked, _ = strconv.Atoi(m[1])
	} else {
		assert.Contains(t, log, "every published event was acknowledged")
	}
	t.Logf("%+v, unacknowledged at stop %d", got, unacked)
	assert.Equal(t, n, got.published)
	assert.Equal(t, got.published, got.acked+got.outputDropped+unacked, "every published event is delivered, dropped or reported")
	if f == slow {
		assert.Zero(t, unacked, "a slow server gets its answer out within shutdown_timeout")
	}
	// Delivered means received (at least once).
	eventually(t, nil, 30*time.Second, "every acknowledged event at the server", func() bool {
		return len(listenerCounts(tg.received(), ip)) >= got.acked
	})
}

// TestDeliveryUnderFaults runs each of connbeat's own outputs through a
// proxy that makes its server slow (3 s per answer; 0.5 s for AMQP's
// chattier protocol), flaky (every other
// connection, the first included, reset once answered) or stop halfway through an answer, and
// stops the agent with SIGTERM, or with SIGKILL and a restart.
func TestDeliveryUnderFaults(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		f    fault
		sig  syscall.Signal
	}{
		{"slow/SIGTERM", slow, syscall.SIGTERM},
		{"flaky/SIGTERM", flaky, syscall.SIGTERM},
		{"half-writing/SIGTERM", halfWrite, syscall.SIGTERM},
		{"flaky/SIGKILL", flaky, syscall.SIGKILL},
	}
	t.Run("http", func(t *testing.T) {
		t.Parallel()
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				faultCase(t, httpTarget(t), nil, fmt.Sprintf("127.0.0.%d", 60+i), c.f, c.sig)
			})
		}
	})
	t.Run("amqp", func(t *testing.T) {
		t.Parallel()
		b := startRabbit(t, nil)
		q := bindQueue(t, b, "faults", "connbeat.listener.*")
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				faultCase(t, amqpTarget(b, q), nil, fmt.Sprintf("127.0.0.%d", 70+i), c.f, c.sig)
			})
		}
	})
	t.Run("zeromq push", func(t *testing.T) {
		t.Parallel()
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				tg, consume := zeromqTarget(t)
				faultCase(t, tg, consume, fmt.Sprintf("127.0.0.%d", 80+i), c.f, c.sig)
			})
		}
	})
}
