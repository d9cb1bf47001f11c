package capture

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/model"
)

// encode lays r out as the programs do (struct record in capture.bpf.c),
// for the decoder's tests, its fuzz seeds and the benchmark.
func encode(r *record, family uint8, order binary.ByteOrder) []byte {
	b := make([]byte, recordLen)
	b[0], b[1], b[2], b[3] = r.typ, family, uint8(r.oldState), r.flags
	order.PutUint16(b[4:], r.sock.LocalPort)
	order.PutUint16(b[6:], r.sock.RemotePort)
	order.PutUint32(b[8:], uint32(r.owner.PID))
	order.PutUint32(b[12:], r.owner.UID)
	order.PutUint32(b[16:], uint32(r.skErr))
	order.PutUint32(b[20:], uint32(r.sock.NetNS))
	order.PutUint64(b[24:], r.cookie)
	order.PutUint64(b[32:], r.owner.Cgroup)
	order.PutUint64(b[40:], r.start)
	order.PutUint64(b[48:], r.ts)
	put := func(dst []byte, a netip.Addr) {
		if family == afINET {
			a4 := a.As4()
			copy(dst, a4[:])
		} else {
			a16 := a.As16()
			copy(dst, a16[:])
		}
	}
	put(b[56:72], r.sock.LocalIP)
	put(b[72:88], r.sock.RemoteIP)
	copy(b[88:104], r.owner.Comm)
	order.PutUint64(b[104:], r.counters.bytesSent)
	order.PutUint64(b[112:], r.counters.bytesReceived)
	order.PutUint32(b[120:], r.counters.segsSent)
	order.PutUint32(b[124:], r.counters.segsReceived)
	order.PutUint32(b[128:], r.counters.retrans)
	order.PutUint32(b[132:], r.counters.srttMicros)
	return b
}

func closeRecord(family uint8) record {
	local, remote := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.0.2.7")
	if family == afINET6 {
		local, remote = netip.MustParseAddr("fd00::1"), netip.MustParseAddr("2001:db8::7")
	}
	return record{
		typ: recClose, oldState: model.StateLastAck, flags: flagOwner | flagPassive,
		owner:  Owner{PID: 4242, UID: 1000, Cgroup: 77, Comm: "nginx"},
		cookie: 99, start: 1_000_000, ts: 6_000_000,
		sock:     model.Socket{LocalIP: local, RemoteIP: remote, LocalPort: 443, RemotePort: 51000, NetNS: 4026531840, UID: 1000},
		counters: counters{bytesSent: 1234, bytesReceived: 567, segsSent: 9, segsReceived: 7, retrans: 1, srttMicros: 250},
	}
}

// TestDecodeRecord: a record decodes to what was encoded, in both byte
// orders and families; IPv4-mapped addresses are unmapped.
func TestDecodeRecord(t *testing.T) {
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		for _, family := range []uint8{afINET, afINET6} {
			want := closeRecord(family)
			var got record
			require.NoError(t, decodeRecord(encode(&want, family, order), order, &got))
			assert.Equal(t, want, got)
		}
	}
	mapped := closeRecord(afINET6)
	mapped.sock.RemoteIP = netip.MustParseAddr("::ffff:192.0.2.9")
	var got record
	require.NoError(t, decodeRecord(encode(&mapped, afINET6, binary.LittleEndian), binary.LittleEndian, &got))
	assert.Equal(t, netip.MustParseAddr("192.0.2.9"), got.sock.RemoteIP)

	udp := closeRecord(afINET)
	udp.typ, udp.oldState = recUDP, 0
	require.NoError(t, decodeRecord(encode(&udp, afINET, binary.LittleEndian), binary.LittleEndian, &got))
	assert.Equal(t, model.UDP, got.sock.Transport)
}

// TestDecodeRecordRefuses: malformed records are errors, never sockets
// with made-up fields.
func TestDecodeRecordRefuses(t *testing.T) {
	good := closeRecord(afINET)
	b := encode(&good, afINET, binary.LittleEndian)
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"short":        {b[:100], "capture record of 100 bytes, want 136"},
		"long":         {append(append([]byte{}, b...), 0), "capture record of 137 bytes"},
		"type":         {with(b, 0, 9), "unknown type 9"},
		"type zero":    {with(b, 0, 0), "unknown type 0"},
		"family":       {with(b, 1, 3), "unknown address family 3"},
		"state":        {with(b, 2, 40), "unknown TCP state 40"},
		"owner no pid": {withPID(b, 0), "owner pid 0"},
		"owner < 0":    {withPID(b, -5), "owner pid -5"},
	} {
		var r record
		assert.ErrorContains(t, decodeRecord(tc.b, binary.LittleEndian, &r), tc.want, name)
	}
}

func with(b []byte, off int, v byte) []byte {
	c := append([]byte{}, b...)
	c[off] = v
	return c
}

func withPID(b []byte, pid int32) []byte {
	c := append([]byte{}, b...)
	binary.LittleEndian.PutUint32(c[8:], uint32(pid))
	return c
}

func TestEndOf(t *testing.T) {
	for _, tc := range []struct {
		old  model.State
		err  int32
		want model.ConnEnd
	}{
		{model.StateSynSent, 111, model.EndRefused},
		{model.StateSynSent, 110, model.EndFailed},
		{model.StateSynSent, 0, model.EndFailed},
		{model.StateEstablished, 104, model.EndRST},
		{model.StateEstablished, 0, model.EndRST},
		{model.StateCloseWait, 32, model.EndRST},
		{model.StateLastAck, 0, model.EndFIN},
		{model.StateFinWait2, 0, model.EndFIN},
		{model.StateClosing, 0, model.EndFIN},
		{model.StateFinWait1, 104, model.EndRST},
	} {
		assert.Equal(t, tc.want, endOf(tc.old, tc.err), "%s err %d", tc.old, tc.err)
	}
}

func TestParseCgroup2Mount(t *testing.T) {
	hybrid := "25 30 0:23 / /sys rw - sysfs sysfs rw\n" +
		"33 25 0:28 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755\n" +
		"34 33 0:29 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
	dir, ok := parseCgroup2Mount([]byte(hybrid))
	assert.True(t, ok)
	assert.Equal(t, "/sys/fs/cgroup/unified", dir)
	_, ok = parseCgroup2Mount([]byte("25 30 0:23 / /sys rw - sysfs sysfs rw\ngarbage\n"))
	assert.False(t, ok)
}

// FuzzDecodeRecord: no input makes the decoder panic, and whatever it
// accepts has a known type and a valid address family and state.
func FuzzDecodeRecord(f *testing.F) {
	for _, family := range []uint8{afINET, afINET6} {
		r := closeRecord(family)
		f.Add(encode(&r, family, binary.LittleEndian))
		r.typ = recUDP
		f.Add(encode(&r, family, binary.LittleEndian))
	}
	f.Add([]byte{})
	f.Add(make([]byte, recordLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r record
		if err := decodeRecord(b, binary.LittleEndian, &r); err != nil {
			return
		}
		if r.typ < recOpen || r.typ > recUDP || !r.sock.LocalIP.IsValid() || (r.oldState != 0 && !r.oldState.Valid()) {
			t.Fatalf("accepted a bad record: %+v", r)
		}
		// Folding it in never panics either.
		c := newTestCapture(Options{KeepFlows: true, MaxFlows: 4, MaxPending: 4})
		c.apply(&r)
		c.Drain(nil)
		c.Flows(nil)
	})
}

// newTestCapture is a Capture without programs, for what user space does
// with records.
func newTestCapture(opts Options) *Capture {
	return &Capture{
		opts:      opts,
		pending:   map[uint64]int{},
		closed:    newClosedOwners(closedOwnersMax, closedOwnersTTL),
		flowProcs: map[Owner]*model.Process{},
		netns:     1,
	}
}

// TestApplyBounded: connections and flows beyond their bounds are
// counted, not kept; an open and its close in one Drain are one
// connection.
func TestApplyBounded(t *testing.T) {
	c := newTestCapture(Options{KeepFlows: true, MaxFlows: 2, MaxPending: 3})
	for i := range 5 {
		r := closeRecord(afINET)
		r.cookie = uint64(i + 1)
		open := r
		open.typ, open.oldState = recOpen, model.StateSynRecv
		c.apply(&open)
		c.apply(&r)
	}
	conns := c.Drain(nil)
	require.Len(t, conns, 3)
	for _, cn := range conns {
		assert.True(t, cn.Closed)
		assert.Equal(t, model.Inbound, cn.Direction)
		assert.EqualValues(t, 4242, cn.Owner.PID)
	}
	flows := c.Flows(nil)
	require.Len(t, flows, 2)
	assert.Equal(t, uint64(1234), flows[0].BytesSent)
	assert.Equal(t, model.EndFIN, flows[0].Ended)
	assert.Equal(t, 5*time.Millisecond, flows[0].End.Sub(flows[0].Start))
	assert.Equal(t, Stats{PendingDropped: 4, FlowsDropped: 3}, c.stats, "the opens and closes of connections 4 and 5; flows 3 to 5")
	assert.Empty(t, c.Drain(nil))
	assert.Empty(t, c.Flows(nil))
	// The TIME_WAIT lookup by addresses knows the connections closed
	// first by this side (FIN_WAIT2 -> TIME_WAIT), not those the peer
	// closed first (LAST_ACK -> gone).
	r := closeRecord(afINET)
	_, ok := c.Owner(&r.sock)
	assert.False(t, ok, "LAST_ACK leaves no TIME_WAIT socket to look up")
	r.oldState, r.cookie = model.StateFinWait2, 99
	c.apply(&r)
	o, ok := c.Owner(&r.sock)
	assert.True(t, ok)
	assert.Equal(t, "nginx", o.Comm)
}

// TestFlowsShareProcess: the flows of one owner share its process, the
// flows of another owner have their own, and the processes kept are
// bounded.
func TestFlowsShareProcess(t *testing.T) {
	c := newTestCapture(Options{KeepFlows: true, MaxFlows: 1 << 16, MaxPending: 1 << 16})
	for i := range maxFlowProcesses + 3 {
		r := closeRecord(afINET)
		r.cookie = uint64(i + 1)
		if i >= 2 {
			r.owner.PID = int32(5000 + i)
		}
		c.apply(&r)
	}
	flows := c.Flows(nil)
	require.Len(t, flows, maxFlowProcesses+3)
	assert.Same(t, flows[0].Process, flows[1].Process, "one owner, one process")
	assert.Equal(t, &model.Process{PID: 4242, Name: "nginx", UID: 1000}, flows[0].Process)
	assert.NotSame(t, flows[1].Process, flows[2].Process)
	assert.EqualValues(t, 5002, flows[2].Process.PID)
	assert.LessOrEqual(t, len(c.flowProcs), maxFlowProcesses)
}

// BenchmarkRecord measures the user-space cost of one connection's
// records: the decoding and folding of an open and a close, flows kept,
// and its share of a Drain and a Flows.
func BenchmarkRecord(b *testing.B) {
	c := newTestCapture(Options{KeepFlows: true, MaxFlows: 1 << 16, MaxPending: 1 << 16})
	r := closeRecord(afINET)
	closeB := encode(&r, afINET, nativeEndian)
	r.typ, r.oldState = recOpen, model.StateSynRecv
	openB := encode(&r, afINET, nativeEndian)
	var rec record
	var conns []Conn
	var flows []model.ConnFlow
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for _, raw := range [][]byte{openB, closeB} {
			binary.LittleEndian.PutUint64(raw[24:], uint64(i+1)) // cookie
			if err := decodeRecord(raw, nativeEndian, &rec); err != nil {
				b.Fatal(err)
			}
			c.apply(&rec)
		}
		if i%1000 == 999 {
			conns = c.Drain(conns[:0])
			flows = c.Flows(flows[:0])
		}
	}
}
