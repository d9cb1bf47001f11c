package procs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/connbeat/connbeat/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Hostile /proc: what a local user can make a process look like to the
// agent, and the races between the fd scan and the metadata read.

// refresh runs one poll's join over the sockets with these inodes.
func refresh(t *testing.T, r *Resolver, inodes ...uint64) {
	t.Helper()
	_, err := r.Refresh(context.Background(), sockets(inodes...))
	require.NoError(t, err)
}

// owner returns the process the join gives for ino, failing without one.
func owner(t *testing.T, r *Resolver, ino uint64) (*model.Process, int) {
	t.Helper()
	p, n := r.Owner(ino)
	require.NotNil(t, p, "no owner for inode %d", ino)
	return p, n
}

// TestHugeCmdline: a process with a megabyte of arguments. Its command
// line is read up to the bound only, cut at an argument boundary and
// marked; the same for one single argument of a megabyte, and for an
// allowlisted environment value.
func TestHugeCmdline(t *testing.T) {
	fp := newFakeProc(t)
	many := []string{"java"}
	for size := 0; size < 1<<20; size += 110 {
		many = append(many, "-Dprop"+strings.Repeat("x", 100)+"=v")
	}
	one := []string{strings.Repeat("A", 1<<20), "--password", "hunter2"}
	env := []string{"SMALL=s", "BIG=" + strings.Repeat("e", 100<<10), "PAD=" + strings.Repeat("p", 1<<20), "LATE=l"}
	fp.add(fakeProcess{pid: 60, ppid: 1, comm: "java", exe: "/usr/bin/java", args: many, environ: env, sockets: []uint64{1}})
	fp.add(fakeProcess{pid: 61, ppid: 1, comm: "sh", exe: "/bin/sh", args: one, sockets: []uint64{2}})
	fp.add(fakeProcess{pid: 62, ppid: 1, comm: "ok", exe: "/bin/ok", args: []string{"ok", "-v"}, sockets: []uint64{3}})
	r := newResolver(t, fp.root, MetadataOptions{Cmdline: true, RedactCmdline: true, Environ: true, EnvironAllowlist: []string{"BIG", "SMALL", "LATE"}})
	refresh(t, r, 1, 2, 3)

	p, _ := owner(t, r, 1)
	assert.True(t, p.ArgsTruncated)
	assert.LessOrEqual(t, len(strings.Join(p.Args, "\x00")), DefaultMaxCmdlineBytes)
	assert.Greater(t, len(strings.Join(p.Args, "\x00")), DefaultMaxCmdlineBytes-200, "filled up to the last whole argument")
	assert.Equal(t, many[:len(p.Args)], p.Args, "whole arguments only")
	assert.True(t, p.EnvironTruncated)
	assert.Len(t, p.Environ["BIG"], MaxEnvValueBytes)
	assert.Equal(t, "s", p.Environ["SMALL"])
	assert.NotContains(t, p.Environ, "LATE", "past the 256 KiB searched")

	p, _ = owner(t, r, 2)
	assert.True(t, p.ArgsTruncated)
	assert.Equal(t, []string{strings.Repeat("A", DefaultMaxCmdlineBytes)}, p.Args, "a first argument past the bound stands cut")

	p, _ = owner(t, r, 3)
	assert.False(t, p.ArgsTruncated)
	assert.False(t, p.EnvironTruncated)
	assert.Equal(t, []string{"ok", "-v"}, p.Args)
}

// TestExecAfterSocket: bash opens a connection, then execs sleep, which
// inherits it (the pid, its start time and the fd stay). The event sent
// after the exec names sleep, not bash.
func TestExecAfterSocket(t *testing.T) {
	fp := newFakeProc(t)
	bash := fakeProcess{pid: 70, ppid: 1, comm: "bash", exe: "/usr/bin/bash", args: []string{"bash", "-c", "exec 3<>/dev/tcp/10.0.0.1/80; exec sleep 100"},
		start: 800, startCode: 0x5500_0000, startStack: 0x7ffc_0000, sockets: []uint64{10}}
	fp.add(bash)
	r := newResolver(t, fp.root, MetadataOptions{Cmdline: true})
	refresh(t, r, 10)
	before, _ := owner(t, r, 10)
	assert.Equal(t, "bash", before.Binary)

	sleep := bash
	sleep.comm, sleep.exe, sleep.args = "sleep", "/usr/bin/sleep", []string{"sleep", "100"}
	sleep.startCode, sleep.startStack = 0x5600_0000, 0x7ffd_0000
	fp.exec(sleep)

	// The fd table is unchanged: the next poll is a steady one and its
	// join answers from memory. What is sent is read again.
	refresh(t, r, 10)
	joined, _ := r.Owner(10)
	now := r.Current(joined)
	require.NotNil(t, now)
	assert.Equal(t, "sleep", now.Binary)
	assert.Equal(t, "sleep", now.Name)
	assert.Equal(t, []string{"sleep", "100"}, now.Args)
	assert.Equal(t, before.StartTime, now.StartTime, "the same process")

	// The poll after that joins to the new image directly.
	refresh(t, r, 10)
	joined, _ = r.Owner(10)
	assert.Equal(t, "sleep", joined.Binary)
}

// TestSetuidAfterSocket: a root process opens a socket, then drops to
// uid 1000: /proc/PID/fd changes owner, and the events say 1000.
func TestSetuidAfterSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving the fake /proc/PID/fd to another uid needs root")
	}
	fp := newFakeProc(t)
	daemon := fakeProcess{pid: 80, ppid: 1, comm: "daemon", exe: "/usr/sbin/daemon", start: 5, uid: 0, sockets: []uint64{20}}
	fp.add(daemon)
	r := newResolver(t, fp.root, MetadataOptions{})
	refresh(t, r, 20)
	p, _ := owner(t, r, 20)
	assert.Equal(t, uint32(0), p.UID)

	daemon.uid = 1000
	fp.exec(daemon) // rewrites status with the new uids and chowns fd
	refresh(t, r, 20)
	p, _ = owner(t, r, 20)
	assert.Equal(t, uint32(1000), p.UID)
}

// TestDeletedExecutables: a binary replaced or deleted on disk, and a
// program run from a memfd, are flagged; their path is kept.
func TestDeletedExecutables(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(fakeProcess{pid: 90, ppid: 1, comm: "3", exe: "/memfd:payload (deleted)", sockets: []uint64{30}})
	fp.add(fakeProcess{pid: 91, ppid: 1, comm: "sshd", exe: "/usr/sbin/sshd (deleted)", sockets: []uint64{31}})
	fp.add(fakeProcess{pid: 92, ppid: 1, comm: "nginx", exe: "/usr/sbin/nginx", sockets: []uint64{32}})
	r := newResolver(t, fp.root, MetadataOptions{})
	refresh(t, r, 30, 31, 32)
	for ino, want := range map[uint64]struct {
		exe     string
		deleted bool
	}{30: {"/memfd:payload", true}, 31: {"/usr/sbin/sshd", true}, 32: {"/usr/sbin/nginx", false}} {
		p, _ := r.Owner(ino)
		require.NotNil(t, p)
		assert.Equal(t, want.exe, p.Executable)
		assert.Equal(t, want.deleted, p.ExecutableDeleted, want.exe)
	}
}

// TestPIDReusedBetweenScanAndRead: the fd scan finds a socket in pid 100;
// before its details are read the process exits and another takes the
// pid. The socket is reported without process rather than with the
// newcomer's details, and the next poll reads the newcomer afresh.
func TestPIDReusedBetweenScanAndRead(t *testing.T) {
	fp := newFakeProc(t)
	fp.add(fakeProcess{pid: 100, ppid: 1, comm: "victim", exe: "/bin/victim", start: 10, sockets: []uint64{40}})
	r := newResolver(t, fp.root, MetadataOptions{})
	refresh(t, r, 40)

	fp.reuse(fakeProcess{pid: 100, ppid: 1, comm: "intruder", exe: "/tmp/intruder", start: 20})
	p, _ := r.Owner(40)
	assert.Nil(t, p, "not the intruder's details")

	refresh(t, r, 40)
	p, _ = r.Owner(40)
	assert.Nil(t, p, "the intruder does not hold the socket")
}

// TestManyForkedHolders: a listener shared by a master and 500 forked
// workers (and a worker's own child) is attributed to the master, with
// every holder counted, and stays right as workers exit.
func TestManyForkedHolders(t *testing.T) {
	fp := newFakeProc(t)
	const workers = 500
	fp.add(fakeProcess{pid: 1000, ppid: 1, comm: "master", exe: "/bin/srv", start: 1, sockets: []uint64{50}})
	for i := 1; i <= workers; i++ {
		fp.add(fakeProcess{pid: 1000 + i, ppid: 1000, comm: "worker", exe: "/bin/srv", start: 2, sockets: []uint64{50}})
	}
	fp.add(fakeProcess{pid: 9000, ppid: 1001, comm: "grandchild", exe: "/bin/srv", start: 3, sockets: []uint64{50}})
	r := newResolver(t, fp.root, MetadataOptions{})
	refresh(t, r, 50)
	p, n := owner(t, r, 50)
	assert.Equal(t, int32(1000), p.PID)
	assert.Equal(t, workers+2, n)

	// The master exits: its workers, reparented elsewhere, are the
	// topmost holders now; the lowest pid stands for them.
	fp.remove(1000)
	refresh(t, r, 50)
	p, n = owner(t, r, 50)
	assert.Equal(t, int32(1001), p.PID)
	assert.Equal(t, workers+1, n)
	require.NoError(t, os.RemoveAll(filepath.Join(fp.root, "9000")))
}
