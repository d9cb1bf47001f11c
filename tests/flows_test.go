package tests

import (
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/connections/bpfiter"
	"github.com/connbeat/connbeat/internal/testkit/kerneltest"
)

// requireCapture skips where the kernel or the test's privileges cannot
// run BPF programs at all (what the capture needs first); anything else
// the capture lacks fails the test, through the agent's start with
// capture: events.
func requireCapture(t *testing.T) {
	t.Helper()
	needRoot(t, "the event capture loads BPF programs")
	src, err := bpfiter.Open()
	kerneltest.RequireBPF(t, err)
	require.NoError(t, src.Close())
}

// onceResult is a cbpeer once run: its pid and what it printed.
type onceResult struct {
	pid   float64
	local string // its local address; "" when refused or udp
	said  string
}

// runOnce runs `cbpeer once NETWORK ADDR N M`: a process that makes one
// exchange and exits at once, before any poll could see it.
func runOnce(t *testing.T, network, addr string, n, m int) onceResult {
	t.Helper()
	cmd := exec.Command(bins.peer, "once", network, addr, strconv.Itoa(n), strconv.Itoa(m))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "cbpeer once: %s", out)
	r := onceResult{pid: float64(cmd.Process.Pid), said: strings.TrimSpace(string(out))}
	if v, ok := strings.CutPrefix(r.said, "done "); ok {
		r.local = v
	}
	return r
}

func isFlow(e Event) bool { return e.Str("connbeat.kind") == "flow" }

// TestFlowEventsShortConnections: connections of a few milliseconds, from
// processes that exit at once, IPv4 and IPv6, each come out as two flows
// (the client's outbound, the server's inbound), each with its process,
// the exact payload bytes sent each way, and a FIN end; a refused connect
// is a flow that ended refused; a UDP client's sendto without connect is a
// flow that ends after udp_flow_timeout.
func TestFlowEventsShortConnections(t *testing.T) {
	requireCapture(t)
	a := RunAgent(t, AgentOptions{Connbeat: `  capture: events
  flow_events: true
  udp_flow_timeout: 1s
  poll_interval: 500ms
  event_format: classic`})
	waitLog(t, a, "connbeat started")
	assert.Contains(t, a.Stderr(), "flow_events=true")

	for _, tc := range []struct{ name, listen string }{
		{"ipv4", "127.0.0.1:0"},
		{"ipv6", "[::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := StartPeer(t, nil, "serve", "tcp", tc.listen, "100", "37")
			port := addrPort(t, srv.Addr)
			c := runOnce(t, "tcp", srv.Addr, 100, 37)
			require.NotEmpty(t, c.local, c.said)
			cport := addrPort(t, c.local)

			out := a.WaitFor("the client's flow", func(e Event) bool {
				return isFlow(e) && e.Str("connbeat.direction") == "outbound" &&
					e.Get("local_port") == cport && e.Get("remote_port") == port
			})
			assert.Equal(t, c.pid, out.Get("local_process.pid"), "attributed to the client, which has exited")
			assert.Equal(t, float64(100), out.Get("connbeat.flow.bytes_sent"))
			assert.Equal(t, float64(37), out.Get("connbeat.flow.bytes_received"))
			assert.Equal(t, "fin", out.Str("connbeat.flow.ended"))
			assert.Equal(t, "tcp", out.Str("connbeat.transport"))
			start, end := out.Get("connbeat.flow.start"), out.Get("connbeat.flow.end")
			assert.NotNil(t, start)
			assert.NotNil(t, end)

			in := a.WaitFor("the server's flow", func(e Event) bool {
				return isFlow(e) && e.Str("connbeat.direction") == "inbound" &&
					e.Get("local_port") == port && e.Get("remote_port") == cport
			})
			assert.Equal(t, srv.PID(), in.Get("local_process.pid"), "attributed to the server")
			assert.Equal(t, float64(37), in.Get("connbeat.flow.bytes_sent"))
			assert.Equal(t, float64(100), in.Get("connbeat.flow.bytes_received"))
		})
	}

	t.Run("refused", func(t *testing.T) {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		require.NoError(t, err)
		closed := ln.Addr().String()
		require.NoError(t, ln.Close()) // nothing listens there now
		c := runOnce(t, "tcp", closed, 1, 1)
		require.Equal(t, "refused", c.said)
		f := a.WaitFor("the refused connect's flow", func(e Event) bool {
			return isFlow(e) && e.Get("remote_port") == addrPort(t, closed) && e.Get("local_process.pid") == c.pid
		})
		assert.Equal(t, "refused", f.Str("connbeat.flow.ended"))
		assert.Equal(t, "outbound", f.Str("connbeat.direction"))
		assert.Equal(t, float64(0), f.Get("connbeat.flow.bytes_sent"))
	})

	t.Run("udp sendto", func(t *testing.T) {
		srv := StartPeer(t, nil, "serve", "udp", "127.0.0.1:0", "0", "21")
		port := addrPort(t, srv.Addr)
		c := runOnce(t, "udp", srv.Addr, 300, 21)
		require.NotEmpty(t, c.local, c.said)
		f := a.WaitFor("the UDP client's flow", func(e Event) bool {
			return isFlow(e) && e.Str("connbeat.transport") == "udp" && e.Get("remote_port") == port &&
				e.Get("local_port") == addrPort(t, c.local)
		})
		assert.Equal(t, c.pid, f.Get("local_process.pid"))
		assert.Equal(t, "timeout", f.Str("connbeat.flow.ended"))
		// The capture counts a UDP pair's datagrams, not their bytes:
		// its cgroup sendmsg/recvmsg hooks do not see a datagram's length
		// (issue 12 item 4 is open for UDP byte counts).
		assert.Equal(t, float64(1), f.Get("connbeat.flow.segs_sent"))
		assert.Equal(t, float64(1), f.Get("connbeat.flow.segs_received"))
		assert.Nil(t, f.Get("connbeat.flow.retransmits"), "TCP's only")
	})
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}

// TestFlowEventsBetweenPolls: a flow is published soon after its
// connection ends, not held until the next poll (a burst of them would
// otherwise wait in memory for a whole poll interval).
func TestFlowEventsBetweenPolls(t *testing.T) {
	requireCapture(t)
	const pollInterval = 20 * time.Second
	a := RunAgent(t, AgentOptions{Connbeat: `  capture: events
  flow_events: true
  poll_interval: 20s
  aggregation: 60s`})
	waitLog(t, a, "connbeat started")
	srv := StartPeer(t, nil, "serve", "tcp", "127.0.0.1:0", "10", "10")
	port := addrPort(t, srv.Addr)
	ended := time.Now()
	c := runOnce(t, "tcp", srv.Addr, 10, 10)
	require.NotEmpty(t, c.local, c.said)
	a.WaitFor("the client's flow", func(e Event) bool {
		return isFlow(e) && e.Get("remote_port") == port && e.Get("local_process.pid") == c.pid
	})
	// The capture's reader takes records at least once a second, and
	// the flows it has read go out at once.
	assert.Less(t, time.Since(ended), pollInterval/4, "the flow waited for a poll")
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}

// TestFlowEventsECS: in the ECS format the initiator is source on both
// ends' flows: the server's inbound flow names the client as source, with
// the bytes the client sent.
func TestFlowEventsECS(t *testing.T) {
	requireCapture(t)
	a := RunAgent(t, AgentOptions{Connbeat: `  capture: events
  flow_events: true
  poll_interval: 500ms
  event_format: ecs`})
	// Connections made before the capture is attached are not flows.
	waitLog(t, a, "connbeat started")
	srv := StartPeer(t, nil, "serve", "tcp", "127.0.0.1:0", "10", "2000")
	port := addrPort(t, srv.Addr)
	c := runOnce(t, "tcp", srv.Addr, 10, 2000)
	require.NotEmpty(t, c.local, c.said)
	cport := addrPort(t, c.local)
	t.Logf("client %s (pid %v) to %s", c.local, c.pid, srv.Addr)
	defer func() {
		if t.Failed() {
			for _, e := range a.Matching(func(e Event) bool {
				return isFlow(e) && (e.Get("destination.port") == port || e.Get("source.port") == port)
			}) {
				t.Logf("flow: %v", e)
			}
		}
	}()
	for _, dir := range []string{"outbound", "inbound"} {
		f := a.WaitFor(dir+" flow", func(e Event) bool {
			return isFlow(e) && e.Str("connbeat.direction") == dir &&
				e.Get("source.port") == cport && e.Get("destination.port") == port
		})
		assert.Equal(t, float64(10), f.Get("source.bytes"), dir)
		assert.Equal(t, float64(2000), f.Get("destination.bytes"), dir)
		assert.Equal(t, float64(2010), f.Get("network.bytes"), dir)
		assert.Equal(t, "success", f.Str("event.outcome"), dir)
		assert.Greater(t, f.Get("event.duration"), float64(0), dir)
		want := map[string]string{"outbound": "egress", "inbound": "ingress"}[dir]
		assert.Equal(t, want, f.Str("network.direction"))
		pid := map[string]float64{"outbound": c.pid, "inbound": srv.PID()}[dir]
		assert.Equal(t, pid, f.Get("process.pid"), dir)
	}
	assert.Equal(t, 0, a.Stop(syscall.SIGTERM))
}
