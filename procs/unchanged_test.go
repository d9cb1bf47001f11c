package procs

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestResolverColdReadsEachTableOnce checks that the first refresh reads
// every fd table once, even when sockets nobody holds send it looking for
// owners: tables read in this refresh are already up to date.
func TestResolverColdReadsEachTableOnce(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(fakeProcess{pid: 10, ppid: 1, comm: "a", exe: "/bin/a", start: 1, sockets: []uint64{1}})
	fp.add(fakeProcess{pid: 11, ppid: 1, comm: "b", exe: "/bin/b", start: 2, sockets: []uint64{2}})
	r := newResolver(t, fp.root, MetadataOptions{})

	stats, err := r.Refresh(context.Background(), sockets(1, 2, 99))
	require.NoError(t, err)
	assert.Equal(t, Stats{Processes: 2, Rescanned: 2, Unresolved: 1}, stats)
}

// TestResolverUnchangedHost checks the shortcut for a host where nothing
// changed (same sockets in the same order, no fd table read): results stay
// those of a full check, and any change brings the full check back.
func TestResolverUnchangedHost(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(fakeProcess{pid: 10, ppid: 1, comm: "a", exe: "/bin/a", start: 1, sockets: []uint64{1}})
	fp.add(fakeProcess{pid: 11, ppid: 1, comm: "b", exe: "/bin/b", start: 2, sockets: []uint64{2, 3}})
	r := newResolver(t, fp.root, MetadataOptions{})
	ctx := context.Background()

	_, err := r.Refresh(ctx, sockets(1, 2, 3, 99))
	require.NoError(t, err)
	for range 3 {
		stats, err := r.Refresh(ctx, sockets(1, 2, 3, 99))
		require.NoError(t, err)
		assert.Equal(t, Stats{Processes: 2, Unresolved: 1, Unchanged: true}, stats, "the unresolvable inode stays counted")
	}

	// The same inodes in another order are checked again, and agree.
	stats, err := r.Refresh(ctx, sockets(99, 3, 2, 1))
	require.NoError(t, err)
	assert.Equal(t, Stats{Processes: 2, Unresolved: 1}, stats)

	// The unresolvable socket is gone.
	stats, err = r.Refresh(ctx, sockets(99, 3, 2, 1)[1:])
	require.NoError(t, err)
	assert.Equal(t, Stats{Processes: 2}, stats)

	stats, err = r.Refresh(ctx, sockets(3, 2, 1))
	require.NoError(t, err)
	assert.True(t, stats.Unchanged)

	// A process that holds no socket starts, is read, and exits: no
	// socket's owner changed.
	fp.add(fakeProcess{pid: 12, ppid: 1, comm: "cron", exe: "/bin/cron", start: 3})
	stats, err = r.Refresh(ctx, sockets(3, 2, 1))
	require.NoError(t, err)
	assert.Equal(t, 1, stats.Rescanned)
	assert.True(t, stats.Unchanged, "a new process without sockets")
	fp.remove(12)
	stats, err = r.Refresh(ctx, sockets(3, 2, 1))
	require.NoError(t, err)
	assert.True(t, stats.Unchanged, "a process without sockets gone")

	// A forked child holds its parent's socket: a new holder.
	fp.add(fakeProcess{pid: 13, ppid: 11, comm: "b", exe: "/bin/b", start: 4, sockets: []uint64{3}})
	stats, err = r.Refresh(ctx, sockets(3, 2, 1))
	require.NoError(t, err)
	assert.False(t, stats.Unchanged, "a socket with a new holder")
	_, holders := r.Owner(3)
	assert.Equal(t, 2, holders)
	fp.remove(13)
	stats, err = r.Refresh(ctx, sockets(3, 2, 1))
	require.NoError(t, err)
	assert.False(t, stats.Unchanged, "a holder gone")

	// Process 10 exits but its socket lingers (orphaned): the same socket
	// list, yet the inode lost its owner and must be looked for.
	fp.remove(10)
	stats, err = r.Refresh(ctx, sockets(3, 2, 1))
	require.NoError(t, err)
	assert.False(t, stats.Unchanged, "a process gone")
	assert.Equal(t, 1, stats.Processes)
	assert.Equal(t, 1, stats.Unresolved)
	p, _ := r.Owner(1)
	assert.Nil(t, p)
	p, owners := r.Owner(3)
	require.NotNil(t, p)
	assert.Equal(t, int32(11), p.PID)
	assert.Equal(t, 1, owners)
}

// TestResolverCancelledRefresh checks that fd tables a cancelled refresh
// did not get to are read by the next one.
func TestResolverCancelledRefresh(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(fakeProcess{pid: 10, ppid: 1, comm: "a", exe: "/bin/a", start: 1, sockets: []uint64{1}})
	fp.add(fakeProcess{pid: 11, ppid: 1, comm: "b", exe: "/bin/b", start: 2, sockets: []uint64{2}})
	r := newResolver(t, fp.root, MetadataOptions{})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := r.Refresh(ctx, sockets(1, 2))
	require.ErrorIs(t, err, context.Canceled)

	stats, err := r.Refresh(context.Background(), sockets(1, 2))
	require.NoError(t, err)
	assert.Equal(t, Stats{Processes: 2, Rescanned: 2}, stats)
	for ino, pid := range map[uint64]int32{1: 10, 2: 11} {
		p, _ := r.Owner(ino)
		require.NotNil(t, p, "inode %d", ino)
		assert.Equal(t, pid, p.PID)
	}
}

// TestResolverParallelScan reads many fd tables in one refresh (the
// parallel path) and checks every socket is attributed to its process.
func TestResolverParallelScan(t *testing.T) {
	fp := newFakeProc(t)
	var all []uint64
	for pid := 100; pid < 140; pid++ {
		socks := []uint64{uint64(pid * 10), uint64(pid*10 + 1)}
		fp.add(fakeProcess{pid: pid, ppid: 1, comm: "w", exe: "/bin/w", start: uint64(pid), sockets: socks})
		all = append(all, socks...)
	}
	r := newResolver(t, fp.root, MetadataOptions{})
	stats, err := r.Refresh(context.Background(), sockets(all...))
	require.NoError(t, err)
	assert.Equal(t, Stats{Processes: 40, Rescanned: 40}, stats)
	for _, ino := range all {
		p, owners := r.Owner(ino)
		require.NotNil(t, p, "inode %d", ino)
		assert.Equal(t, int32(ino/10), p.PID)
		assert.Equal(t, 1, owners)
	}
}

// TestResolverOwnerMemo checks that on an unchanged host Owner answers from
// the previous poll's answers, in call order, and that a change on the host
// or calls in another order fall back to the maps with the right answers.
func TestResolverOwnerMemo(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(fakeProcess{pid: 10, ppid: 1, comm: "a", exe: "/bin/a", start: 1, sockets: []uint64{1}})
	fp.add(fakeProcess{pid: 11, ppid: 1, comm: "b", exe: "/bin/b", start: 2, sockets: []uint64{2, 3}})
	r := newResolver(t, fp.root, MetadataOptions{})
	ctx := context.Background()
	owners := func(inodes ...uint64) []int32 {
		var pids []int32
		for _, ino := range inodes {
			p, _ := r.Owner(ino)
			if p == nil {
				pids = append(pids, 0)
				continue
			}
			pids = append(pids, p.PID)
		}
		return pids
	}

	_, err := r.Refresh(ctx, sockets(1, 2, 3, 99))
	require.NoError(t, err)
	assert.False(t, r.steady, "the first refresh reads every table")
	assert.Equal(t, []int32{10, 11, 11, 0}, owners(1, 2, 3, 99))

	_, err = r.Refresh(ctx, sockets(1, 2, 3, 99))
	require.NoError(t, err)
	require.True(t, r.steady)
	assert.Equal(t, []int32{10, 11, 11, 0}, owners(1, 2, 3, 99))
	assert.True(t, r.steady, "every answer came from the memo")
	assert.Equal(t, 4, r.memoAt)

	// Same host, calls in another order: the memo is left, answers stay right.
	_, err = r.Refresh(ctx, sockets(1, 2, 3, 99))
	require.NoError(t, err)
	assert.Equal(t, []int32{11, 10, 0, 11}, owners(3, 1, 99, 2))
	assert.False(t, r.steady)

	// Process 10 exits, its socket lingers: the memo must not answer 10.
	fp.remove(10)
	_, err = r.Refresh(ctx, sockets(1, 2, 3, 99))
	require.NoError(t, err)
	assert.False(t, r.steady)
	assert.Equal(t, []int32{0, 11, 11, 0}, owners(1, 2, 3, 99))

	// Steady again, from the answers recorded after the change.
	_, err = r.Refresh(ctx, sockets(1, 2, 3, 99))
	require.NoError(t, err)
	require.True(t, r.steady)
	assert.Equal(t, []int32{0, 11, 11, 0}, owners(1, 2, 3, 99))
	assert.Equal(t, 4, r.memoAt)
}
