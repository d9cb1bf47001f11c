package pipeline

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/elastic-agent-libs/logp/logptest"
	"github.com/elastic/elastic-agent-libs/monitoring"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/capture"
	"github.com/connbeat/connbeat/config"
	"github.com/connbeat/connbeat/connections"
	"github.com/connbeat/connbeat/internal/testkit/child"
	"github.com/connbeat/connbeat/internal/testkit/kerneltest"
	"github.com/connbeat/connbeat/internal/testkit/sandbox"
	"github.com/connbeat/connbeat/model"
)

// dialChild connects to args[0], sends a few bytes, closes first (its end
// lingers in TIME_WAIT, held by no process) and exits; it prints its
// local port.
var dialChild = child.Helper{Name: "pipeline-dial", Main: func(args []string) error {
	c, err := net.Dial("tcp4", args[0])
	if err != nil {
		return err
	}
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	time.Sleep(5 * time.Millisecond)
	port := c.LocalAddr().(*net.TCPAddr).Port
	if err := c.Close(); err != nil {
		return err
	}
	fmt.Println(port)
	return nil
}}

func TestMain(m *testing.M) {
	child.Serve(dialChild)
	os.Exit(m.Run())
}

// newEvents returns a pipeline with the event capture forced, skipping
// where the host cannot run it.
func newEvents(t *testing.T, reg *monitoring.Registry) *Pipeline {
	t.Helper()
	cfg := config.Default()
	cfg.SocketSource = connections.Netlink
	cfg.Capture = config.CaptureEvents
	cfg.FlowEvents = true
	// The programs see the whole host's connections, other tests' and
	// builds' too: room for their bursts.
	cfg.CaptureMaps.RingBuffer = 32 << 20
	p, err := New(Options{Config: cfg, Metrics: reg})
	kerneltest.RequireBPF(t, err)
	t.Cleanup(func() { p.Close() })
	require.True(t, p.Capturing())
	return p
}

// dial runs dialChild against ln and returns its pid and local port,
// once the server end has read to the end and closed too.
func dial(t *testing.T, ln net.Listener) (int, uint16) {
	t.Helper()
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		s, err := ln.Accept()
		if err == nil {
			io.Copy(io.Discard, s)
			s.Close()
		}
	}()
	cmd, err := dialChild.Command(context.Background(), ln.Addr().String())
	require.NoError(t, err)
	out, err := cmd.Output()
	require.NoError(t, err)
	port, err := strconv.Atoi(string(out[:len(out)-1]))
	require.NoError(t, err)
	<-accepted
	return cmd.Process.Pid, uint16(port)
}

// eventsFor returns the listener and connection events of a poll between
// two ports (a listener's: the other 0), by direction, with their process
// id (0 for none; or the pid at pidField); flow events, which say a direction of their own, are
// left out. Both ports, since another test's connection may have had one
// of them a moment ago (the kernel hands ephemeral ports out again).
func eventsFor(t *testing.T, events []beat.Event, port, other uint16, pidField ...string) map[string]int64 {
	t.Helper()
	got := map[string]int64{}
	for _, e := range events {
		if kind, _ := e.Fields.GetValue("connbeat.kind"); kind == "flow" {
			continue
		}
		lport, _ := e.Fields.GetValue("local_port")
		rport, _ := e.Fields.GetValue("remote_port")
		if rport == nil {
			rport = uint16(0)
		}
		if (lport != port || rport != other) && (lport != other || rport != port) {
			continue
		}
		dir, err := e.Fields.GetValue("connbeat.direction")
		require.NoError(t, err)
		field := "local_process.pid"
		if len(pidField) > 0 {
			field = pidField[0] // the peer's: remote_process.pid
		}
		var pid int64
		if v, err := e.Fields.GetValue(field); err == nil {
			pid = int64(v.(int32))
		}
		got[dir.(string)] = pid
	}
	return got
}

// TestEventsConnectionBetweenPolls: a 5 ms connection made and closed by
// a process that exited between two polls, which a poll of the socket
// tables would miss, is reported by the next poll at both ends with the
// right processes, without a read of the socket tables; the flow carries
// the child too.
func TestEventsConnectionBetweenPolls(t *testing.T) {
	reg := monitoring.NewRegistry()
	p := newEvents(t, reg)
	ln, err := net.Listen("tcp4", "127.0.0.2:0")
	require.NoError(t, err)
	defer ln.Close()
	lport := uint16(ln.Addr().(*net.TCPAddr).Port)
	now := time.Now()
	var first []beat.Event
	stats, err := p.Poll(context.Background(), now, func(e beat.Event) { first = append(first, e) })
	require.NoError(t, err)
	assert.True(t, stats.Full, "the first poll reads the socket tables")
	assert.Equal(t, map[string]int64{"listening": int64(os.Getpid())}, eventsFor(t, first, lport, 0))

	pid, cport := dial(t, ln)
	var events []beat.Event
	// Simulated polls 100 ms apart, well within the 30 s window.
	for deadline := time.Now().Add(10 * time.Second); len(eventsFor(t, events, cport, lport)) < 2 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		now = now.Add(100 * time.Millisecond)
		stats, err = p.Poll(context.Background(), now, func(e beat.Event) { events = append(events, e) })
		require.NoError(t, err)
	}
	assert.False(t, stats.Full, "within the window, no read of the socket tables")
	assert.Equal(t, map[string]int64{"outbound": int64(pid), "inbound": int64(os.Getpid())}, eventsFor(t, events, cport, lport), "capture: %+v", captureStats(t, p))
	assert.Equal(t, map[string]int64{"outbound": int64(os.Getpid()), "inbound": int64(pid)}, eventsFor(t, events, cport, lport, "remote_process.pid"), "each end names the other's process")

	// With flow_events on, the polls publish the connection's flows too;
	// the client end's carries its process and its 4 bytes.
	var client beat.Event
	require.Eventually(t, func() bool {
		for _, e := range events {
			kind, _ := e.Fields.GetValue("connbeat.kind")
			lport, _ := e.Fields.GetValue("local_port")
			if kind == "flow" && lport == cport {
				client = e
				return true
			}
		}
		now = now.Add(2 * time.Second)
		_, err = p.Poll(context.Background(), now, func(e beat.Event) { events = append(events, e) })
		require.NoError(t, err)
		return false
	}, 5*time.Second, 20*time.Millisecond)
	flowPID, _ := client.Fields.GetValue("local_process.pid")
	assert.EqualValues(t, pid, flowPID)
	sent, _ := client.Fields.GetValue("connbeat.flow.bytes_sent")
	assert.Equal(t, uint64(4), sent)
	snap := monitoring.CollectFlatSnapshot(reg, monitoring.Full, false)
	assert.Contains(t, snap.Ints, "capture.lost")
	assert.Positive(t, snap.Ints["capture.records"])
}

// TestEventsTimeWaitKeepsProcess: the client end of a closed connection
// lingers in TIME_WAIT, held by no process; a full read lists it with the
// process the capture saw own it.
func TestEventsTimeWaitKeepsProcess(t *testing.T) {
	p := newEvents(t, nil)
	ln, err := net.Listen("tcp4", "127.0.0.3:0")
	require.NoError(t, err)
	defer ln.Close()
	lport := uint16(ln.Addr().(*net.TCPAddr).Port)
	pid, cport := dial(t, ln)
	var rec *model.Record
	// The capture may read the close a moment after the socket table
	// shows the TIME_WAIT socket. The remote port tells it from another
	// test's TIME_WAIT socket at the same ephemeral port (the kernel
	// hands a port out again for another destination), which this
	// capture never saw open.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		records, _, err := p.Records(context.Background())
		require.NoError(t, err)
		rec = nil
		for i := range records {
			if r := &records[i]; r.Socket.LocalPort == cport && r.Socket.RemotePort == lport && r.Socket.State == model.StateTimeWait {
				rec = r
			}
		}
		if rec != nil && rec.Process != nil {
			break
		}
	}
	require.NotNil(t, rec, "the client's TIME_WAIT socket listed")
	require.NotNil(t, rec.Process, "TIME_WAIT socket joined to the process that owned it (capture: %+v; its flows: %+v)", captureStats(t, p), flowsAt(p, cport))
	assert.EqualValues(t, pid, rec.Process.PID)
	assert.Equal(t, model.Outbound, rec.Direction)
}

// flowsAt returns the flows the capture saw end at a local port, to tell
// a close it missed from one it saw without an owner when a test fails.
func flowsAt(p *Pipeline, port uint16) []model.ConnFlow {
	var at []model.ConnFlow
	for _, f := range p.capture.c.Flows(nil) {
		if f.Socket.LocalPort == port || f.Socket.RemotePort == port {
			at = append(at, f)
		}
	}
	return at
}

// captureStats returns the capture's counters, to tell a lost record from
// a bug when a test fails.
func captureStats(t *testing.T, p *Pipeline) capture.Stats {
	st, err := p.capture.c.Stats()
	require.NoError(t, err)
	return st
}

// TestCaptureWithoutBPF runs itself again in a child whose seccomp filter
// makes bpf(2) fail with EPERM, as Docker's default profile does: auto
// polls, saying why once; events fails naming what is missing.
func TestCaptureWithoutBPF(t *testing.T) {
	child.RunTest(t, func(t *testing.T) {
		if err := sandbox.DenySyscall(unix.SYS_BPF, unix.EPERM); err != nil {
			t.Skipf("cannot install a seccomp filter: %v", err)
		}
		captureFallback(t, "operation not permitted")
	})
}

// TestCaptureUnprivileged runs itself again in a child that gave up root
// (uid and gid nobody, no capabilities): auto polls, events fails.
func TestCaptureUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to become another user")
	}
	child.RunTest(t, func(t *testing.T) {
		require.NoError(t, unix.Setgroups(nil))
		require.NoError(t, unix.Setgid(65534))
		require.NoError(t, unix.Setuid(65534))
		captureFallback(t, "CAP_BPF")
	})
}

func captureFallback(t *testing.T, why string) {
	t.Helper()
	cfg := config.Default()
	cfg.SocketSource = connections.Netlink
	logger, logs := logptest.NewTestingLoggerWithObserver(t, "test")
	p, err := New(Options{Config: cfg, Logger: logger})
	require.NoError(t, err)
	defer p.Close()
	assert.False(t, p.Capturing())
	var n int
	stats, err := p.Poll(context.Background(), time.Now(), func(beat.Event) { n++ })
	require.NoError(t, err)
	assert.True(t, stats.Full)
	assert.Positive(t, n, "polling reports the host's sockets")
	found := 0
	for _, e := range logs.TakeAll() {
		if strings.Contains(e.Message, "connection events unavailable") {
			found++
			assert.Contains(t, e.Message, why)
			assert.Contains(t, e.Message, "polling the socket tables")
		}
	}
	assert.Equal(t, 1, found, "one log line says why")

	cfg.Capture = config.CaptureEvents
	_, err = New(Options{Config: cfg, Logger: logger})
	require.Error(t, err)
	assert.ErrorContains(t, err, "connbeat.capture: events")
	assert.ErrorContains(t, err, why)
	assert.True(t, model.IsUnavailable(err), "%v", err)
}

// TestEventsWindowsAligned: with the event capture, dedup windows start
// at the full reads. A connection first reported between two full reads
// (from the capture) and still open at the next full read is reported
// again there, in its new window, and not again within it.
func TestEventsWindowsAligned(t *testing.T) {
	cfg := config.Default()
	cfg.SocketSource = connections.Netlink
	cfg.Capture = config.CaptureEvents
	cfg.Aggregation = 10 * time.Second
	cfg.CaptureMaps.RingBuffer = 32 << 20
	p, err := New(Options{Config: cfg})
	kerneltest.RequireBPF(t, err)
	defer p.Close()
	ln, err := net.Listen("tcp4", "127.0.0.4:0")
	require.NoError(t, err)
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	var cport uint16 // the client's, once it dialled
	outbound := func(at time.Duration) (int, Stats) {
		n := 0
		stats, err := p.Poll(context.Background(), t0.Add(at), func(e beat.Event) {
			if eventsFor(t, []beat.Event{e}, cport, port)["outbound"] != 0 {
				n++
			}
		})
		require.NoError(t, err)
		return n, stats
	}
	n, stats := outbound(0)
	require.True(t, stats.Full)
	require.Zero(t, n)

	c, err := net.Dial("tcp4", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	cport = uint16(c.LocalAddr().(*net.TCPAddr).Port)
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Close()
	got := 0
	for at := 2 * time.Second; got == 0 && at < 9*time.Second; at += 100 * time.Millisecond {
		time.Sleep(20 * time.Millisecond) // for the capture to read the connect
		n, stats = outbound(at)
		require.False(t, stats.Full)
		got += n
	}
	require.Equal(t, 1, got, "the capture's connection reported in the first window")
	n, stats = outbound(10 * time.Second)
	require.True(t, stats.Full)
	assert.Equal(t, 1, n, "reported again in the second window, by its full read")
	n, stats = outbound(12 * time.Second)
	require.False(t, stats.Full)
	assert.Zero(t, n, "once a window")
}

// t0 is the tests' fake start of polling.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
