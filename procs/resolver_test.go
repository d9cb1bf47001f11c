package procs

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/connbeat/connbeat/model"
	"github.com/connbeat/connbeat/procs/redact"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newResolver(t *testing.T, root string, meta MetadataOptions) *Resolver {
	t.Helper()
	r, err := New(Options{Root: root, Metadata: meta})
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	return r
}

func sockets(inodes ...uint64) []model.Socket {
	out := make([]model.Socket, len(inodes))
	for i, ino := range inodes {
		out[i] = model.Socket{Inode: ino, State: model.StateEstablished}
	}
	return out
}

// fixtureRoot is a fake /proc committed under testdata (go test -update
// rewrites it): an nginx master and a forked worker sharing a listener, and
// a curl whose executable was deleted and whose command line holds secrets.
const fixtureRoot = "testdata/proc"

func writeFixture(t *testing.T) {
	require.NoError(t, os.RemoveAll(fixtureRoot))
	fp := newFakeProcAt(t, fixtureRoot)
	fp.add(fakeProcess{pid: 42, ppid: 1, comm: "nginx", exe: "/usr/sbin/nginx",
		args: []string{"nginx", "-g", "daemon off;"}, start: 500, sockets: []uint64{1001}, files: []string{"/var/log/nginx.log", "pipe:[7]"}})
	fp.add(fakeProcess{pid: 43, ppid: 42, comm: "nginx", exe: "/usr/sbin/nginx", args: []string{"nginx: worker"}, start: 510, sockets: []uint64{1001, 1002}})
	fp.add(fakeProcess{pid: 50, ppid: 1, comm: "curl", exe: "/usr/bin/curl (deleted)",
		args: []string{"curl", "--password", "hunter2", "https://u:secret@example.com"}, start: 700, sockets: []uint64{1003}})
}

func TestResolverFakeProc(t *testing.T) {
	if *update {
		writeFixture(t)
	}
	fp := &fakeProc{t: t, root: fixtureRoot}
	r := newResolver(t, fp.root, MetadataOptions{Cmdline: true, RedactCmdline: true})
	stats, err := r.Refresh(context.Background(), sockets(1001, 1002, 1003))
	require.NoError(t, err)
	assert.Equal(t, Stats{Processes: 3, Rescanned: 3}, stats)

	p, owners := r.Owner(1001)
	require.NotNil(t, p)
	assert.Equal(t, 2, owners)
	assert.Equal(t, &model.Process{
		PID: 42, PPID: 1, Name: "nginx", Binary: "nginx", Executable: "/usr/sbin/nginx",
		Args:      []string{"nginx", "-g", "daemon off;"},
		StartTime: time.Unix(fakeBootTime+5, 0), UID: 0, User: "root",
	}, p, "a shared socket is attributed to the topmost holder")

	p, owners = r.Owner(1002)
	require.NotNil(t, p)
	assert.Equal(t, int32(43), p.PID)
	assert.Equal(t, 1, owners)

	p, _ = r.Owner(1003)
	require.NotNil(t, p)
	assert.Equal(t, "curl", p.Binary, "a deleted executable keeps its name")
	assert.Equal(t, "/usr/bin/curl", p.Executable)
	assert.Equal(t, []string{"curl", "--password", redact.Mask, "https://u:" + redact.Mask + "@example.com"}, p.Args)
	assert.True(t, p.ExecutableDeleted)

	p, owners = r.Owner(9999)
	assert.Nil(t, p)
	assert.Zero(t, owners)
	p, _ = r.Owner(0)
	assert.Nil(t, p, "inode 0 (TIME_WAIT) has no owner")
}

// TestResolverSharedOwnerTie: a socket held by two unrelated processes
// (passed over a unix socket, say) and by a child of one of them is
// attributed to the lower pid of the two whose parent does not hold it,
// whatever order /proc lists them in.
func TestResolverSharedOwnerTie(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(fakeProcess{pid: 70, ppid: 1, comm: "proxy", start: 100, sockets: []uint64{2001}})
	fp.add(fakeProcess{pid: 60, ppid: 1, comm: "broker", start: 90, sockets: []uint64{2001}})
	fp.add(fakeProcess{pid: 55, ppid: 70, comm: "proxy-worker", start: 110, sockets: []uint64{2001}})
	r := newResolver(t, fp.root, MetadataOptions{})
	_, err := r.Refresh(context.Background(), sockets(2001))
	require.NoError(t, err)
	p, owners := r.Owner(2001)
	require.NotNil(t, p)
	assert.Equal(t, 3, owners)
	assert.Equal(t, int32(60), p.PID, "the lower pid of the two topmost holders")
}

func TestResolverIncremental(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(fakeProcess{pid: 10, ppid: 1, comm: "a", exe: "/bin/a", start: 1, sockets: []uint64{1}})
	fp.add(fakeProcess{pid: 11, ppid: 1, comm: "b", exe: "/bin/b", start: 2, sockets: []uint64{2}})
	r := newResolver(t, fp.root, MetadataOptions{})
	ctx := context.Background()

	stats, err := r.Refresh(ctx, sockets(1, 2))
	require.NoError(t, err)
	assert.Equal(t, 2, stats.Rescanned)

	// Nothing changed: no fd table is read again.
	stats, err = r.Refresh(ctx, sockets(1, 2))
	require.NoError(t, err)
	assert.Equal(t, Stats{Processes: 2, Unchanged: true}, stats)

	// A new socket in a known process is found through the unknown-inode
	// path, once; an inode nobody holds is searched for once, not per poll.
	fp.addSocket(11, 9, 3)
	stats, err = r.Refresh(ctx, sockets(1, 2, 3, 77))
	require.NoError(t, err)
	assert.Equal(t, 2, stats.Rescanned, "processes of the sockets' uid are read once")
	assert.Equal(t, 1, stats.Unresolved)
	p, _ := r.Owner(3)
	require.NotNil(t, p)
	assert.Equal(t, int32(11), p.PID)

	stats, err = r.Refresh(ctx, sockets(1, 2, 3, 77))
	require.NoError(t, err)
	assert.Equal(t, 0, stats.Rescanned, "a known-unresolvable inode does not trigger a rescan")
	assert.Equal(t, 1, stats.Unresolved)

	// The socket went away: it is forgotten.
	stats, err = r.Refresh(ctx, sockets(1, 2, 3))
	require.NoError(t, err)
	assert.Equal(t, 0, stats.Unresolved)

	// A new process is read; an exited one is dropped with its sockets.
	fp.add(fakeProcess{pid: 12, ppid: 1, comm: "c", exe: "/bin/c", start: 3, sockets: []uint64{4}})
	fp.remove(10)
	stats, err = r.Refresh(ctx, sockets(2, 3, 4))
	require.NoError(t, err)
	assert.Equal(t, 2, stats.Processes)
	assert.Equal(t, 1, stats.Rescanned)
	p, _ = r.Owner(1)
	assert.Nil(t, p)
	p, _ = r.Owner(4)
	require.NotNil(t, p)
	assert.Equal(t, "c", p.Binary)
}

func TestResolverPIDReuse(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(fakeProcess{pid: 20, ppid: 1, comm: "old", exe: "/bin/old", start: 100, sockets: []uint64{5}})
	r := newResolver(t, fp.root, MetadataOptions{})
	ctx := context.Background()
	_, err := r.Refresh(ctx, sockets(5))
	require.NoError(t, err)
	p, _ := r.Owner(5)
	require.NotNil(t, p)
	assert.Equal(t, "old", p.Binary)

	// The pid is reused by another program before the next poll.
	fp.reuse(fakeProcess{pid: 20, ppid: 1, comm: "new", exe: "/bin/new", start: 900, sockets: []uint64{6}})
	_, err = r.Refresh(ctx, sockets(6))
	require.NoError(t, err)
	p, _ = r.Owner(6)
	require.NotNil(t, p)
	assert.Equal(t, "new", p.Binary, "no stale metadata from the pid's previous process")
	assert.Equal(t, time.Unix(fakeBootTime+9, 0), p.StartTime)
	p, _ = r.Owner(5)
	assert.Nil(t, p)
}

func TestResolverEnviron(t *testing.T) {
	fp := newFakeProc(t)
	env := []string{"PATH=/bin", "SERVICE_NAME=web", "AWS_SECRET_ACCESS_KEY=abc", "EMPTY=", "NOEQUALS"}
	fp.add(fakeProcess{pid: 30, ppid: 1, comm: "svc", exe: "/bin/svc", environ: env, sockets: []uint64{8}})
	ctx := context.Background()

	for _, tc := range []struct {
		name string
		opts MetadataOptions
		want map[string]string
	}{
		{"off", MetadataOptions{}, nil},
		{"on without allowlist ships nothing", MetadataOptions{Environ: true}, nil},
		{"allowlist", MetadataOptions{Environ: true, EnvironAllowlist: []string{"SERVICE_NAME", "EMPTY", "MISSING"}},
			map[string]string{"SERVICE_NAME": "web", "EMPTY": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newResolver(t, fp.root, tc.opts)
			_, err := r.Refresh(ctx, sockets(8))
			require.NoError(t, err)
			p, _ := r.Owner(8)
			require.NotNil(t, p)
			assert.Equal(t, tc.want, p.Environ)
			assert.Nil(t, p.Args, "cmdline off")
		})
	}
}

func TestResolverMissingRoot(t *testing.T) {
	_, err := New(Options{Root: "/nonexistent/proc"})
	require.ErrorContains(t, err, "/nonexistent/proc")
}
