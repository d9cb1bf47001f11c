package dedup

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/connbeat/connbeat/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func rec(dir model.Direction, pid int32, local string, lport uint16, remote string, rport uint16) model.Record {
	r := model.Record{
		Kind:      model.Connection,
		Direction: dir,
		Socket: model.Socket{
			LocalIP: netip.MustParseAddr(local), LocalPort: lport,
			RemoteIP: netip.MustParseAddr(remote), RemotePort: rport,
		},
	}
	if dir == model.Listening {
		r.Kind = model.Listener
	}
	if pid != 0 {
		r.Process = &model.Process{PID: pid}
	}
	return r
}

func counts(reports []model.Report) map[string]int {
	m := map[string]int{}
	for _, r := range reports {
		m[fmt.Sprintf("%s %s:%d-%s:%d", r.Direction, r.Socket.LocalIP, r.Socket.LocalPort, r.Socket.RemoteIP, r.Socket.RemotePort)] = r.Sockets
	}
	return m
}

func TestFilterGroupsByKey(t *testing.T) {
	records := []model.Record{
		// one client process, three ephemeral ports to one server: one event
		rec(model.Outbound, 10, "10.0.0.1", 40001, "10.0.0.9", 443),
		rec(model.Outbound, 10, "10.0.0.1", 40002, "10.0.0.9", 443),
		rec(model.Outbound, 10, "10.0.0.1", 40003, "10.0.0.9", 443),
		// another process to the same server: its own event
		rec(model.Outbound, 11, "10.0.0.1", 40004, "10.0.0.9", 443),
		// same process, other server port: its own event
		rec(model.Outbound, 10, "10.0.0.1", 40005, "10.0.0.9", 80),
		// inbound: every distinct peer is its own event (the old connbeat's #297)
		rec(model.Inbound, 20, "10.0.0.1", 80, "10.0.0.7", 5000),
		rec(model.Inbound, 20, "10.0.0.1", 80, "10.0.0.7", 5001),
		rec(model.Inbound, 21, "10.0.0.1", 80, "10.0.0.8", 5000),
		// listeners: per (ip, port, pid)
		rec(model.Listening, 20, "0.0.0.0", 80, "0.0.0.0", 0),
		rec(model.Listening, 21, "0.0.0.0", 80, "0.0.0.0", 0),
		rec(model.Listening, 20, "::", 80, "::", 0),
	}
	c := New(30 * time.Second)
	got := c.Filter(records, t0, nil)
	assert.Equal(t, map[string]int{
		"outbound 10.0.0.1:40001-10.0.0.9:443": 3,
		"outbound 10.0.0.1:40004-10.0.0.9:443": 1,
		"outbound 10.0.0.1:40005-10.0.0.9:80":  1,
		"inbound 10.0.0.1:80-10.0.0.7:5000":    2,
		"inbound 10.0.0.1:80-10.0.0.8:5000":    1,
		"listening 0.0.0.0:80-0.0.0.0:0":       1, // two pids: keys differ, map key collides
		"listening :::80-:::0":                 1,
	}, counts(got))
	assert.Len(t, got, 8, "two listener events for 0.0.0.0:80, one per pid")
	assert.Equal(t, 8, c.Len())
}

func TestFilterWindow(t *testing.T) {
	c := New(30 * time.Second)
	r := []model.Record{rec(model.Outbound, 1, "10.0.0.1", 40000, "10.0.0.2", 80)}

	assert.Len(t, c.Filter(r, t0, nil), 1, "first sight is reported")
	assert.Empty(t, c.Filter(r, t0.Add(2*time.Second), nil), "inside the window: not again")
	assert.Empty(t, c.Filter(r, t0.Add(29*time.Second), nil))
	again := c.Filter(r, t0.Add(30*time.Second), nil)
	require.Len(t, again, 1, "still open after the window: reported again")
	assert.Equal(t, 1, again[0].Sockets)
	assert.Empty(t, c.Filter(r, t0.Add(31*time.Second), nil), "the window restarts at the re-send")
}

func TestFilterBoundedUnderChurn(t *testing.T) {
	c := New(10 * time.Second)
	// Every poll brings 100 new peers and the old ones are gone: the cache
	// holds at most one window's worth of keys.
	for poll := 0; poll < 200; poll++ {
		var records []model.Record
		for i := 0; i < 100; i++ {
			ip := netip.AddrFrom4([4]byte{10, byte(poll >> 8), byte(poll), byte(i)})
			r := rec(model.Inbound, 1, "10.0.0.1", 80, "10.0.0.1", 1)
			r.Socket.RemoteIP = ip
			records = append(records, r)
		}
		got := c.Filter(records, t0.Add(time.Duration(poll)*2*time.Second), nil)
		require.Len(t, got, 100)
		assert.LessOrEqual(t, c.Len(), 500, "poll %d", poll) // 5 polls of 2 s per 10 s window
	}
}

func TestKeyIgnoresEphemeralPorts(t *testing.T) {
	a := rec(model.Outbound, 5, "10.0.0.1", 40000, "10.0.0.2", 443)
	b := rec(model.Outbound, 5, "10.0.0.1", 40001, "10.0.0.2", 443)
	assert.Equal(t, KeyOf(&a), KeyOf(&b))
	in1 := rec(model.Inbound, 5, "10.0.0.1", 443, "10.0.0.2", 40000)
	in2 := rec(model.Inbound, 6, "10.0.0.1", 443, "10.0.0.2", 40001)
	assert.Equal(t, KeyOf(&in1), KeyOf(&in2), "inbound key has no pid and no peer port")
	in3 := rec(model.Inbound, 5, "10.0.0.1", 443, "10.0.0.3", 40000)
	assert.NotEqual(t, KeyOf(&in1), KeyOf(&in3))
	noOwner := rec(model.Outbound, 0, "10.0.0.1", 40000, "10.0.0.2", 443)
	assert.NotEqual(t, KeyOf(&a), KeyOf(&noOwner))
}

func BenchmarkFilter(b *testing.B) {
	var records []model.Record
	for i := 0; i < 40000; i++ {
		r := rec(model.Inbound, 1, "127.0.0.1", 80, "127.0.0.1", uint16(i))
		r.Socket.RemoteIP = netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)})
		records = append(records, r)
	}
	c := New(time.Hour)
	var dst []model.Report
	dst = c.Filter(records, t0, dst)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst = c.Filter(records, t0.Add(time.Second), dst[:0])
	}
}

// TestKeyHoldsNamespace: records alike in all but their network namespace
// are different reports, each counting its own sockets.
func TestKeyHoldsNamespace(t *testing.T) {
	inNS := func(r model.Record, ns uint64) model.Record { r.Socket.NetNS = ns; return r }
	records := []model.Record{
		inNS(rec(model.Listening, 10, "127.0.0.1", 8080, "0.0.0.0", 0), 1),
		inNS(rec(model.Listening, 10, "127.0.0.1", 8080, "0.0.0.0", 0), 2),
		inNS(rec(model.Inbound, 10, "10.0.0.1", 80, "10.0.0.9", 40001), 1),
		inNS(rec(model.Inbound, 10, "10.0.0.1", 80, "10.0.0.9", 40002), 1),
		inNS(rec(model.Inbound, 10, "10.0.0.1", 80, "10.0.0.9", 40003), 2),
		inNS(rec(model.Outbound, 11, "10.0.0.9", 40001, "10.0.0.1", 80), 1),
		inNS(rec(model.Outbound, 11, "10.0.0.9", 40003, "10.0.0.1", 80), 2),
	}
	got := New(time.Minute).Filter(records, t0, nil)
	type row struct {
		Dir     model.Direction
		NetNS   uint64
		Sockets int
	}
	var rows []row
	for _, r := range got {
		rows = append(rows, row{r.Direction, r.Socket.NetNS, r.Sockets})
	}
	assert.Equal(t, []row{
		{model.Listening, 1, 1}, {model.Listening, 2, 1},
		{model.Inbound, 1, 2}, {model.Inbound, 2, 1},
		{model.Outbound, 1, 1}, {model.Outbound, 2, 1},
	}, rows)
	assert.NotEqual(t, KeyOf(&records[0]), KeyOf(&records[1]))
}

// TestFilterTransportInKey: the same addresses over TCP and UDP are two
// keys in every direction, while UDP sockets group among themselves as
// TCP ones do.
func TestFilterTransportInKey(t *testing.T) {
	asUDP := func(r model.Record) model.Record {
		r.Socket.Transport = model.UDP
		return r
	}
	records := []model.Record{
		rec(model.Outbound, 10, "10.0.0.1", 40001, "10.0.0.9", 53),
		asUDP(rec(model.Outbound, 10, "10.0.0.1", 40001, "10.0.0.9", 53)),
		asUDP(rec(model.Outbound, 10, "10.0.0.1", 40002, "10.0.0.9", 53)),
		rec(model.Inbound, 20, "10.0.0.1", 53, "10.0.0.7", 5000),
		asUDP(rec(model.Inbound, 20, "10.0.0.1", 53, "10.0.0.7", 5000)),
		rec(model.Listening, 20, "0.0.0.0", 53, "0.0.0.0", 0),
		asUDP(rec(model.Listening, 20, "0.0.0.0", 53, "0.0.0.0", 0)),
	}
	got := New(time.Minute).Filter(records, t0, nil)
	type row struct {
		dir       model.Direction
		transport model.Transport
		sockets   int
	}
	var rows []row
	for _, r := range got {
		rows = append(rows, row{r.Direction, r.Socket.Transport, r.Sockets})
	}
	assert.Equal(t, []row{
		{model.Outbound, model.TCP, 1}, {model.Outbound, model.UDP, 2},
		{model.Inbound, model.TCP, 1}, {model.Inbound, model.UDP, 1},
		{model.Listening, model.TCP, 1}, {model.Listening, model.UDP, 1},
	}, rows)
}

// TestGroupedThenFilterGroups: reporting the groups of records says what
// reporting the records says, window by window, for records drawn at
// random (few keys, many sockets each, and the other way round).
func TestGroupedThenFilterGroups(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	dirs := []model.Direction{model.Outbound, model.Inbound, model.Listening}
	// group groups records through a Filter call of a cache of its own.
	group := func(records []model.Record) []model.Report {
		c := New(time.Second)
		c.Filter(records, t0, nil)
		return c.Grouped(records, nil)
	}
	for round := range 50 {
		records := make([]model.Record, rnd.IntN(400))
		spread := 1 + rnd.IntN(50)
		for i := range records {
			ip := fmt.Sprintf("10.0.0.%d", rnd.IntN(spread))
			records[i] = rec(dirs[rnd.IntN(3)], int32(rnd.IntN(spread)), "10.0.0.1", uint16(1+rnd.IntN(spread)), ip, uint16(1+rnd.IntN(spread)))
		}
		direct, grouped := New(30*time.Second), New(30*time.Second)
		groups := group(records)
		now := t0
		for step := range 4 {
			// Part of the records within the window, then past it.
			part := records[:len(records)*(step+1)/4]
			want := direct.Filter(part, now, nil)
			got := grouped.FilterGroups(group(part), now, nil)
			require.Equal(t, want, got, "round %d step %d", round, step)
			now = now.Add(time.Duration(step) * 15 * time.Second)
		}
		assert.Equal(t, direct.Filter(records, now.Add(time.Hour), nil), grouped.FilterGroups(groups, now.Add(time.Hour), nil))
		sum := 0
		for _, g := range groups {
			sum += g.Sockets
		}
		assert.Equal(t, len(records), sum, "every record in one group")
		// A key reported already is grouped all the same.
		again := New(30 * time.Second)
		again.Filter(records, t0, nil)
		again.Filter(records, t0.Add(time.Second), nil)
		assert.Equal(t, groups, again.Grouped(records, nil), "groups of a call that reported nothing")
	}
}
