package conntrack

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/elastic/elastic-agent-libs/logp/logptest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/model"
)

func flow(ev model.FlowEvent, id uint32, sport uint16) model.Flow {
	orig := model.Tuple{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), SrcPort: sport, DstPort: 80, Proto: 6}
	reply := model.Tuple{Src: orig.Dst, Dst: orig.Src, SrcPort: 80, DstPort: sport, Proto: 6}
	return model.Flow{Event: ev, ID: id, Original: orig, Reply: reply}
}

// fakeJoiner gives every flow it is asked about a process named after the
// call, and remembers the ids it was asked about.
type fakeJoiner struct {
	calls int
	asked [][]uint32
}

func (j *fakeJoiner) Join(_ context.Context, flows []*model.Flow) {
	j.calls++
	var ids []uint32
	for _, f := range flows {
		ids = append(ids, f.ID)
		f.Direction = model.Outbound
		f.Process = &model.Process{PID: int32(j.calls*1000) + int32(f.ID)}
	}
	j.asked = append(j.asked, ids)
}

func testInput(j Joiner, max int) *Input {
	return &Input{opts: Options{Join: j}, log: nopLogger(), table: newTable(max), m: newMetrics(nil)}
}

// feed runs one batch through process and returns what was emitted.
func feed(in *Input, flows ...model.Flow) []model.Flow {
	in.batch = append(in.batch[:0], flows...)
	var out []model.Flow
	in.process(context.Background(), func(f *model.Flow) { out = append(out, *f) })
	return out
}

func pids(flows []model.Flow) []int32 {
	var out []int32
	for _, f := range flows {
		if f.Process == nil {
			out = append(out, 0)
		} else {
			out = append(out, f.Process.PID)
		}
	}
	return out
}

// TestProcessJoins: a NEW is joined; its DESTROY, in a later batch, gets
// the NEW's join without asking again (the process may be gone); one in
// the same batch shares it; an entry never seen is joined at its DESTROY;
// an id reused for another tuple is not taken for the old entry.
func TestProcessJoins(t *testing.T) {
	j := &fakeJoiner{}
	in := testInput(j, 100)

	out := feed(in, flow(model.FlowNew, 1, 1001), flow(model.FlowNew, 2, 1002))
	assert.Equal(t, []int32{1001, 1002}, pids(out))
	assert.Equal(t, [][]uint32{{1, 2}}, j.asked)
	assert.Equal(t, 2, in.table.len())

	out = feed(in, flow(model.FlowDestroy, 1, 1001), flow(model.FlowNew, 3, 1003), flow(model.FlowUpdate, 3, 1003), flow(model.FlowDestroy, 3, 1003), flow(model.FlowDestroy, 9, 1009))
	assert.Equal(t, []int32{1001, 2003, 2003, 2003, 2009}, pids(out), "remembered, shared with the NEW of the batch, joined at DESTROY")
	assert.Equal(t, []uint32{3, 9}, j.asked[1])
	assert.Equal(t, 1, in.table.len(), "only entry 2 is open")

	// Id 2 reused by another tuple (entry 2's DESTROY was lost).
	out = feed(in, flow(model.FlowDestroy, 2, 1111))
	assert.Equal(t, []int32{3002}, pids(out), "joined afresh, not given entry 2's process")
	assert.Equal(t, 1, in.table.len(), "entry 2 stays until a DESTROY or a re-sync says it is gone")
}

// TestTableBounded: the table keeps the most recently seen entries.
func TestTableBounded(t *testing.T) {
	tb := newTable(3)
	for id := uint32(1); id <= 3; id++ {
		f := flow(model.FlowNew, id, uint16(id))
		tb.put(&f, 0)
	}
	f1 := flow(model.FlowNew, 1, 1)
	tb.touch(tb.get(&f1), 0)
	f4 := flow(model.FlowNew, 4, 4)
	tb.put(&f4, 0)
	assert.Equal(t, 3, tb.len())
	assert.Equal(t, uint64(1), tb.evicted)
	f2 := flow(model.FlowNew, 2, 2)
	assert.Nil(t, tb.get(&f2), "the least recently seen entry went")
	assert.NotNil(t, tb.get(&f1))

	var stale []uint32
	f3 := flow(model.FlowNew, 3, 3)
	tb.touch(tb.get(&f3), 2)
	tb.staleBefore(2, func(e *entry) {
		stale = append(stale, e.flow.ID)
		tb.remove(e)
	})
	assert.Equal(t, []uint32{1, 4}, stale, "oldest first")
	assert.Equal(t, 1, tb.len())
}

// TestSweepReportsLostDestroys: after a re-sync, tracked entries the dump
// did not list are reported as DESTROY with their join.
func TestSweepReportsLostDestroys(t *testing.T) {
	j := &fakeJoiner{}
	in := testInput(j, 100)
	feed(in, flow(model.FlowNew, 1, 1001), flow(model.FlowNew, 2, 1002))
	in.gen = 1 // a dump ran and listed entry 2 only
	in.table.touch(in.table.get(&in.batch[1]), 1)
	in.sweepGen = 1
	var out []model.Flow
	in.sweep(context.Background(), func(f *model.Flow) { out = append(out, *f) })
	require.Len(t, out, 1)
	assert.Equal(t, model.FlowDestroy, out[0].Event)
	assert.True(t, out[0].Resync)
	assert.Equal(t, uint32(1), out[0].ID)
	assert.Equal(t, int32(1001), out[0].Process.PID)
	assert.Equal(t, flow(model.FlowNew, 1, 1001).Reply, out[0].Reply)
	assert.Equal(t, 1, in.table.len())
	assert.Equal(t, uint64(1), in.m.resyncDestroy.Get())
}

// TestSetupSysctls turns on what is off, says what it cannot, and leaves
// alone what is on.
func TestSetupSysctls(t *testing.T) {
	for _, tc := range []struct {
		name     string
		set      bool
		readOnly bool
		want     map[string]string
		logs     []string
	}{
		{"set", true, false, map[string]string{"nf_conntrack_events": "2", "nf_conntrack_acct": "1", "nf_conntrack_timestamp": "1"},
			[]string{"conntrack: net.netfilter.nf_conntrack_acct: 0 -> 1", "conntrack: net.netfilter.nf_conntrack_timestamp: 0 -> 1"}},
		{"not asked to", false, false, map[string]string{"nf_conntrack_events": "2", "nf_conntrack_acct": "0", "nf_conntrack_timestamp": "0"},
			[]string{"net.netfilter.nf_conntrack_acct = 0: DESTROY events carry no byte and packet counters (set it to 1, or let connbeat with connbeat.conntrack.set_sysctls: true)",
				"net.netfilter.nf_conntrack_timestamp = 0: events carry no start and end times"}},
		{"read-only", true, true, map[string]string{"nf_conntrack_events": "2", "nf_conntrack_acct": "0", "nf_conntrack_timestamp": "0"},
			[]string{"net.netfilter.nf_conntrack_acct = 0 and connbeat cannot set it (read-only file system)", "DESTROY events carry no byte and packet counters; set it to 1 in /etc/sysctl.d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "net", "netfilter")
			require.NoError(t, os.MkdirAll(dir, 0o755))
			for name, v := range map[string]string{"nf_conntrack_events": "2\n", "nf_conntrack_acct": "0\n", "nf_conntrack_timestamp": "0\n"} {
				require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644))
			}
			logger, logs := logptest.NewTestingLoggerWithObserver(t, "test")
			write := writeSysctl
			if tc.readOnly {
				// As /proc/sys under systemd's ProtectKernelTunables.
				write = func(string, string) error { return syscall.EROFS }
			}
			setupSysctls(root, tc.set, write, logger)
			for name, v := range tc.want {
				b, err := os.ReadFile(filepath.Join(dir, name))
				require.NoError(t, err)
				assert.Equal(t, v, string(b[:1]), name)
			}
			var msgs []string
			for _, e := range logs.All() {
				msgs = append(msgs, e.Message)
			}
			for _, want := range tc.logs {
				found := false
				for _, m := range msgs {
					found = found || strings.Contains(m, want)
				}
				assert.True(t, found, "log line with %q in %q", want, msgs)
			}
		})
	}
}

// TestProcessSkipsNewAfterResync: an entry created while a re-sync dump
// ran is reported by the dump; the kernel's NEW of it, read afterwards,
// is not reported again, but its DESTROY is.
func TestProcessSkipsNewAfterResync(t *testing.T) {
	j := &fakeJoiner{}
	in := testInput(j, 100)
	f := flow(model.FlowNew, 5, 1005)
	f.Resync = true
	e := in.table.put(&f, 1)
	e.setJoin(&f)
	e.dumped = true

	out := feed(in, flow(model.FlowNew, 5, 1005), flow(model.FlowNew, 6, 1006))
	require.Len(t, out, 1)
	assert.Equal(t, uint32(6), out[0].ID)
	out = feed(in, flow(model.FlowDestroy, 5, 1005))
	require.Len(t, out, 1)
	assert.Equal(t, model.FlowDestroy, out[0].Event)
	assert.Equal(t, uint64(2), in.m.events[model.FlowNew].Get(), "both NEWs counted as received")
}
