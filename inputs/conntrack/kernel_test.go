package conntrack

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/monitoring"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	ct "github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
)

// inNewNetns moves the test's goroutine, locked to its thread, into a new
// network namespace until the test ends: its conntrack table and events
// are the test's alone, whatever else runs on the host. Sockets the test
// opens are the namespace's; goroutines it starts may only use them.
func inNewNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN for a network namespace, CAP_NET_ADMIN for ctnetlink)")
	}
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("opening this thread's network namespace: %v", err)
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		unix.Close(orig)
		runtime.UnlockOSThread()
		t.Fatalf("unshare(CLONE_NEWNET): %v", err)
	}
	t.Cleanup(func() {
		// Cleanups run on the test's goroutine, still on this thread. One
		// that cannot go back stays locked and ends with the goroutine.
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		unix.Close(orig)
	})
	require.NoError(t, sockettest.LoopbackUp())
}

// netnsOptions points the input's /proc/net/netlink at the test thread's
// namespace: Run reads it from other threads, still in the host's.
// (/proc/sys is opened by Open, on the test's thread.)
func netnsOptions(opts Options) Options {
	opts.netlinkStats = fmt.Sprintf("/proc/self/task/%d/net/netlink", unix.Gettid())
	return opts
}

// kernelInput opens the input and a ctnetlink connection that creates and
// deletes entries, both in a namespace of the test's own.
func kernelInput(t *testing.T, opts Options) (*Input, *ct.Conn, *monitoring.Registry) {
	t.Helper()
	inNewNetns(t)
	reg := monitoring.NewRegistry()
	opts.Metrics = reg
	if opts.TrackFlows == 0 {
		opts.TrackFlows = 100000
	}
	in, err := Open(netnsOptions(opts))
	require.NoError(t, err)
	t.Cleanup(func() { in.Close() })
	c, err := ct.Dial(nil)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return in, c, reg
}

// collector keeps copies of the flows the input emits.
type collector struct {
	mu    sync.Mutex
	flows []model.Flow
}

func (c *collector) emit(f *model.Flow) {
	c.mu.Lock()
	c.flows = append(c.flows, *f)
	c.mu.Unlock()
}

// reset forgets what was collected.
func (c *collector) reset() {
	c.mu.Lock()
	c.flows = nil
	c.mu.Unlock()
}

func (c *collector) all() []model.Flow {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]model.Flow(nil), c.flows...)
}

// run runs the input until the returned stop is called, which waits for
// Run to return and checks it returned no error.
func run(t *testing.T, in *Input, c *collector) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx, c.emit) }()
	return func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return within 10 s of its context's end")
		}
	}
}

// testFlows are entries the tests create: TCP and UDP over IPv4 and IPv6
// and ICMP echo, each with its own source port or echo id.
func testFlows(n int) []ct.Flow {
	flows := make([]ct.Flow, 0, n)
	for i := 0; len(flows) < n; i++ {
		port := uint16(10000 + i)
		switch i % 4 {
		case 0:
			flows = append(flows, ct.NewFlow(unix.IPPROTO_TCP, 0, netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("203.0.113.7"), port, 443, 120, 0))
		case 1:
			flows = append(flows, ct.NewFlow(unix.IPPROTO_UDP, 0, netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("203.0.113.8"), port, 53, 120, 0))
		case 2:
			flows = append(flows, ct.NewFlow(unix.IPPROTO_TCP, 0, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2"), port, 80, 120, 0))
		case 3:
			f := ct.NewFlow(unix.IPPROTO_ICMP, 0, netip.MustParseAddr("198.51.100.3"), netip.MustParseAddr("203.0.113.9"), 0, 0, 120, 0)
			f.TupleOrig.Proto.ICMPID, f.TupleOrig.Proto.ICMPType = port, 8
			f.TupleReply.Proto.ICMPID, f.TupleReply.Proto.ICMPType = port, 0
			flows = append(flows, f)
		}
	}
	return flows
}

// key names an entry by its original tuple, as the model has it.
func key(t model.Tuple) string {
	return fmt.Sprintf("%d %s:%d -> %s:%d id %d", t.Proto, t.Src, t.SrcPort, t.Dst, t.DstPort, t.ICMPID)
}

func ctKey(f *ct.Flow) string {
	var out model.Flow
	convert(f, &out)
	return key(out.Original)
}

func createAll(t *testing.T, c *ct.Conn, flows []ct.Flow) {
	t.Helper()
	for _, f := range flows {
		require.NoError(t, c.Create(f), "creating %s", ctKey(&f))
	}
}

func deleteAll(t *testing.T, c *ct.Conn, flows []ct.Flow) {
	t.Helper()
	for _, f := range flows {
		require.NoError(t, c.Delete(f), "deleting %s", ctKey(&f))
	}
}

// waitFor waits until cond holds for what the collector has.
func waitFor(t *testing.T, c *collector, what string, cond func([]model.Flow) bool) []model.Flow {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := c.all()
		if cond(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 20 s; %d flows received", what, len(got))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func count(flows []model.Flow, ev model.FlowEvent) int {
	n := 0
	for _, f := range flows {
		if f.Event == ev {
			n++
		}
	}
	return n
}

func snapshot(reg *monitoring.Registry) map[string]int64 {
	return monitoring.CollectFlatSnapshot(reg, monitoring.Full, false).Ints
}

// TestKernelEvents creates and deletes entries through ctnetlink: each
// comes out as a NEW, then a DESTROY, in the order the kernel made them,
// with the tuples it was created with and one id for both events.
func TestKernelEvents(t *testing.T) {
	in, c, reg := kernelInput(t, Options{
		Events:        []model.FlowEvent{model.FlowNew, model.FlowDestroy},
		ReceiveBuffer: 4 << 20,
	})
	var got collector
	stop := run(t, in, &got)
	defer stop()

	flows := testFlows(200)
	createAll(t, c, flows)
	deleteAll(t, c, flows)
	all := waitFor(t, &got, "NEW and DESTROY of every entry", func(f []model.Flow) bool { return len(f) >= 2*len(flows) })
	require.Len(t, all, 2*len(flows), "only the test's entries exist in its namespace")

	ids := map[string]uint32{}
	for i, f := range flows {
		n, d := all[i], all[len(flows)+i]
		assert.Equal(t, model.FlowNew, n.Event, "event %d", i)
		assert.Equal(t, model.FlowDestroy, d.Event, "event %d", len(flows)+i)
		assert.Equal(t, ctKey(&f), key(n.Original), "NEW %d in creation order", i)
		assert.Equal(t, ctKey(&f), key(d.Original), "DESTROY %d in deletion order", i)
		assert.Equal(t, n.ID, d.ID, "one id for both events of %s", ctKey(&f))
		assert.Equal(t, f.TupleReply.IP.SourceAddress, n.Reply.Src)
		assert.NotZero(t, n.ID)
		assert.False(t, n.Resync || d.Resync)
		ids[ctKey(&f)] = n.ID
	}
	assert.Len(t, ids, len(flows), "ids differ between entries")
	assert.Equal(t, "tcp", model.ProtoName(all[0].Original.Proto))
	assert.Equal(t, uint8(8), all[3].Original.ICMPType)
	assert.Equal(t, uint8(0), all[3].Reply.ICMPType)
	assert.Equal(t, uint16(10003), all[3].Original.ICMPID)

	m := snapshot(reg)
	assert.Equal(t, int64(len(flows)), m["conntrack.events.new"])
	assert.Equal(t, int64(len(flows)), m["conntrack.events.destroy"])
	assert.Zero(t, m["conntrack.enobufs"])
	assert.Zero(t, m["conntrack.lost"])
	assert.Zero(t, m["conntrack.decode_errors"])
	assert.Zero(t, m["conntrack.tracked"], "every entry is gone")
}

// TestKernelOverrunResync fills a tiny receive buffer while the input does
// not read: the kernel drops events, which the input counts (ENOBUFS and
// the socket's Drops), and it re-syncs: every entry created gets exactly
// one NEW, sent by the kernel or made up from a dump of the table, and
// every entry deleted exactly one DESTROY, sent or made up for a tracked
// entry the dump no longer lists. Afterwards events flow again.
func TestKernelOverrunResync(t *testing.T) {
	in, c, reg := kernelInput(t, Options{
		Events:        []model.FlowEvent{model.FlowNew, model.FlowDestroy},
		ReceiveBuffer: 4096, // the kernel's minimum holds a handful of events
		lossLogEvery:  time.Millisecond,
	})
	flows := testFlows(2000)
	var got collector

	// Nothing reads while the entries are created.
	createAll(t, c, flows)
	stop := run(t, in, &got)
	all := waitFor(t, &got, "a NEW for every entry", func(f []model.Flow) bool { return count(f, model.FlowNew) >= len(flows) })
	stop()
	news := map[string]int{}
	resynced := 0
	for _, f := range all {
		news[key(f.Original)]++
		if f.Resync {
			resynced++
		}
	}
	for _, f := range flows {
		assert.Equal(t, 1, news[ctKey(&f)], "one NEW for %s", ctKey(&f))
	}
	m := snapshot(reg)
	assert.Positive(t, m["conntrack.enobufs"], "the overflow was seen")
	assert.Positive(t, resynced, "the dump reported entries whose NEW was dropped")
	assert.Equal(t, int64(resynced), m["conntrack.resync.new"])
	assert.Equal(t, int64(resynced), m["conntrack.lost"], "the namespace holds only the test's entries: each dropped NEW was counted and re-synced")
	assert.Equal(t, int64(len(flows)-resynced), m["conntrack.events.new"], "the others' NEW came from the kernel")
	assert.Positive(t, m["conntrack.resyncs"])
	t.Logf("create: %d NEW from the kernel, %d re-synced, %d lost, %d overruns", m["conntrack.events.new"], resynced, m["conntrack.lost"], m["conntrack.enobufs"])

	// Nothing reads while they are deleted.
	deleteAll(t, c, flows)
	got.reset()
	stop = run(t, in, &got)
	all = waitFor(t, &got, "a DESTROY for every entry", func(f []model.Flow) bool { return count(f, model.FlowDestroy) >= len(flows) })
	destroys := map[string]int{}
	resynced = 0
	for _, f := range all {
		require.Equal(t, model.FlowDestroy, f.Event)
		destroys[key(f.Original)]++
		if f.Resync {
			resynced++
		}
	}
	for _, f := range flows {
		assert.Equal(t, 1, destroys[ctKey(&f)], "one DESTROY for %s", ctKey(&f))
	}
	assert.Positive(t, resynced, "tracked entries missing from the dump were reported as DESTROY")
	m = snapshot(reg)
	assert.Equal(t, int64(resynced), m["conntrack.resync.destroy"])
	t.Logf("delete: %d DESTROY from the kernel, %d re-synced, %d lost in all", m["conntrack.events.destroy"], resynced, m["conntrack.lost"])
	assert.Zero(t, m["conntrack.tracked"])

	// Recovered: the next entry's NEW is the kernel's, at once.
	got.reset()
	next := testFlows(1)
	next[0].TupleOrig.Proto.SourcePort, next[0].TupleReply.Proto.DestinationPort = 9999, 9999
	createAll(t, c, next)
	all = waitFor(t, &got, "the NEW after recovery", func(f []model.Flow) bool { return len(f) >= 1 })
	assert.Equal(t, ctKey(&next[0]), key(all[0].Original))
	assert.False(t, all[0].Resync)
	stop()
	assert.Zero(t, snapshot(reg)["conntrack.decode_errors"])
}

// TestKernelStartTracksOpenEntries: the kernel (>= 5.19, with the
// default nf_conntrack_events=2) sends no event at all for entries created
// while nobody listened, not even their DESTROY. The input knows them from
// its start: a re-sync makes up no NEW for them, and reports those gone
// meanwhile as DESTROY. Whether anybody listened is the host's business:
// on some kernels "a listener" is any ctnetlink event socket of any
// namespace (another test's, a conntrack daemon's), and then the kernel
// sends the DESTROYs itself. Either way each entry gone gets exactly one.
func TestKernelStartTracksOpenEntries(t *testing.T) {
	inNewNetns(t)
	c, err := ct.Dial(nil)
	require.NoError(t, err)
	defer c.Close()
	flows := testFlows(50)
	createAll(t, c, flows)
	reg := monitoring.NewRegistry()
	in, err := Open(netnsOptions(Options{Events: []model.FlowEvent{model.FlowNew, model.FlowDestroy}, ReceiveBuffer: 1 << 20, TrackFlows: 1000, Metrics: reg}))
	require.NoError(t, err)
	defer in.Close()
	assert.Equal(t, int64(len(flows)), snapshot(reg)["conntrack.tracked"])

	deleteAll(t, c, flows[:10]) // no DESTROY comes for these
	in.needResync = true        // as after an overrun
	var got collector
	stop := run(t, in, &got)
	defer stop()
	next := testFlows(51)[50:]
	createAll(t, c, next)
	all := waitFor(t, &got, "ten DESTROYs and the new entry's NEW", func(f []model.Flow) bool { return len(f) >= 11 })
	time.Sleep(500 * time.Millisecond)
	all = got.all()
	require.Len(t, all, 11, "no NEW made up for an entry known since the start")
	var destroyed []string
	madeUp := 0
	for _, f := range all {
		if f.Event == model.FlowNew {
			assert.Equal(t, ctKey(&next[0]), key(f.Original))
			assert.False(t, f.Resync)
			continue
		}
		assert.Equal(t, model.FlowDestroy, f.Event)
		if f.Resync {
			madeUp++
		}
		destroyed = append(destroyed, key(f.Original))
	}
	var want []string
	for _, f := range flows[:10] {
		want = append(want, ctKey(&f))
	}
	assert.ElementsMatch(t, want, destroyed)
	m := snapshot(reg)
	assert.Equal(t, int64(10-madeUp), m["conntrack.events.destroy"], "the kernel's DESTROYs and the made-up ones are the ten")
	assert.Equal(t, int64(madeUp), m["conntrack.resync.destroy"])
	t.Logf("%d DESTROYs made up by the re-sync, %d sent by the kernel", madeUp, 10-madeUp)
}

// TestKernelRefusesUnicast: another process's netlink socket cannot send
// the input made-up events; the socket is connected to the kernel.
func TestKernelRefusesUnicast(t *testing.T) {
	in, _, _ := kernelInput(t, Options{Events: []model.FlowEvent{model.FlowNew}, ReceiveBuffer: 1 << 20})
	sa, err := unix.Getsockname(in.sock.fd)
	require.NoError(t, err)
	port := sa.(*unix.SockaddrNetlink).Pid
	require.NotZero(t, port)

	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	require.NoError(t, err)
	defer unix.Close(fd)
	msg := make([]byte, nlHeaderLen+4)
	msg[0] = byte(len(msg))
	err = unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: port})
	assert.True(t, errors.Is(err, unix.ECONNREFUSED), "sending to the input's port: %v", err)
}

func nopLogger() *logp.Logger { return logp.NewNopLogger() }

// TestKernelOverrunWhileReading creates and deletes entries as fast as the
// test can while the input reads into a tiny buffer: overruns come one
// after another, and re-sync dumps race with new entries. Every entry
// still gets exactly one NEW and one DESTROY, and the accounting holds:
// each made-up event stands for a dropped one, but for the kernel's NEWs
// of entries a dump reported first (superseded, not reported again).
func TestKernelOverrunWhileReading(t *testing.T) {
	in, c, reg := kernelInput(t, Options{
		Events:        []model.FlowEvent{model.FlowNew, model.FlowDestroy},
		ReceiveBuffer: 4096,
	})
	var got collector
	stop := run(t, in, &got)
	defer stop()
	flows := testFlows(3000)
	createAll(t, c, flows)
	waitFor(t, &got, "a NEW for every entry", func(f []model.Flow) bool { return count(f, model.FlowNew) >= len(flows) })
	deleteAll(t, c, flows)
	all := waitFor(t, &got, "a DESTROY for every entry", func(f []model.Flow) bool { return count(f, model.FlowDestroy) >= len(flows) })

	seen := map[string]int{}
	for _, f := range all {
		seen[f.Event.String()+" "+key(f.Original)]++
	}
	for _, f := range flows {
		for _, ev := range []string{"NEW", "DESTROY"} {
			assert.Equal(t, 1, seen[ev+" "+ctKey(&f)], "%s of %s", ev, ctKey(&f))
		}
	}
	var m map[string]int64
	deadline := time.Now().Add(5 * time.Second)
	for {
		// The drop count is read again once the input is idle.
		m = snapshot(reg)
		madeUp := m["conntrack.resync.new"] + m["conntrack.resync.destroy"] - m["conntrack.resync.superseded"]
		if m["conntrack.lost"] == madeUp || time.Now().After(deadline) {
			assert.Equal(t, madeUp, m["conntrack.lost"])
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	assert.Positive(t, m["conntrack.enobufs"])
	t.Logf("overruns %d, lost %d, made up %d NEW (%d superseded) and %d DESTROY", m["conntrack.enobufs"], m["conntrack.lost"],
		m["conntrack.resync.new"], m["conntrack.resync.superseded"], m["conntrack.resync.destroy"])
}
