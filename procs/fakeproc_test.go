package procs

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the fake /proc tree in testdata/proc")

// fakeProc builds a /proc tree in a temporary directory: the files the
// resolver and the metadata reader open, in the kernel's formats.
type fakeProc struct {
	t    *testing.T
	root string
}

const fakeBootTime = 1_700_000_000

func newFakeProc(t *testing.T) *fakeProc { return newFakeProcAt(t, t.TempDir()) }

func newFakeProcAt(t *testing.T, root string) *fakeProc {
	require.NoError(t, os.MkdirAll(root, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "stat"),
		[]byte(fmt.Sprintf("cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 1 2 3 4 5 6 7 8 9 10\nbtime %d\nprocesses 10\n", fakeBootTime)), 0o644))
	// Non-pid entries the listing must skip.
	require.NoError(t, os.MkdirAll(filepath.Join(root, "net"), 0o755))
	require.NoError(t, os.Symlink("42", filepath.Join(root, "self")))
	return &fakeProc{t: t, root: root}
}

type fakeProcess struct {
	pid, ppid int
	comm      string
	exe       string
	args      []string
	environ   []string
	uid       int
	start     uint64 // clock ticks after boot
	// where the program's code and stack are mapped (stat fields 26-28):
	// they move on every exec
	startCode, startStack uint64
	sockets               []uint64
	files                 []string // other fd targets
	cgroup                string   // /proc/PID/cgroup; "0::/" when empty
}

func (f *fakeProc) add(p fakeProcess) {
	t := f.t
	dir := filepath.Join(f.root, fmt.Sprint(p.pid))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "fd"), 0o755))
	f.writeImage(dir, p)
	fd := 3
	for _, ino := range p.sockets {
		require.NoError(t, os.Symlink(fmt.Sprintf("socket:[%d]", ino), filepath.Join(dir, "fd", fmt.Sprint(fd))))
		fd++
	}
	for _, target := range p.files {
		require.NoError(t, os.Symlink(target, filepath.Join(dir, "fd", fmt.Sprint(fd))))
		fd++
	}
}

// exec replaces a running fake process's image in place, as execve does:
// same pid, same /proc/PID directory, same open fds (its sockets and files
// are not looked at).
func (f *fakeProc) exec(p fakeProcess) {
	dir := filepath.Join(f.root, fmt.Sprint(p.pid))
	for _, name := range []string{"stat", "status", "cmdline", "environ", "exe", "cgroup"} {
		require.NoError(f.t, os.RemoveAll(filepath.Join(dir, name)))
	}
	f.writeImage(dir, p)
}

// writeImage writes what describes a process's image and credentials.
func (f *fakeProc) writeImage(dir string, p fakeProcess) {
	t := f.t
	stat := fmt.Sprintf("%d (%s) S %d %d %d 0 -1 4194560 100 0 0 0 1 1 0 0 20 0 1 0 %d 10000000 500 18446744073709551615 %d %d %d 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
		p.pid, p.comm, p.ppid, p.pid, p.pid, p.start, p.startCode+1, p.startCode+1, p.startStack)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644))
	status := fmt.Sprintf("Name:\t%s\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t%d\nPid:\t%d\nPPid:\t%d\nUid:\t%d\t%d\t%d\t%d\nGid:\t0\t0\t0\t0\nCapEff:\t0000000000000000\n",
		p.comm, p.pid, p.pid, p.ppid, p.uid, p.uid, p.uid, p.uid)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cmdline"), []byte(strings.Join(p.args, "\x00")+"\x00"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "environ"), []byte(strings.Join(p.environ, "\x00")+"\x00"), 0o644))
	cgroup := p.cgroup
	if cgroup == "" {
		cgroup = "0::/\n"
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644))
	if p.exe != "" {
		require.NoError(t, os.Symlink(p.exe, filepath.Join(dir, "exe")))
	}
	// procfs makes /proc/PID/fd the process's effective uid's (only root
	// can give it away).
	if os.Geteuid() == 0 {
		require.NoError(t, os.Chown(filepath.Join(dir, "fd"), p.uid, 0))
	}
}

// addSocket gives a running fake process one more socket fd.
func (f *fakeProc) addSocket(pid int, fd int, ino uint64) {
	require.NoError(f.t, os.Symlink(fmt.Sprintf("socket:[%d]", ino),
		filepath.Join(f.root, fmt.Sprint(pid), "fd", fmt.Sprint(fd))))
}

// reuse replaces a process by another with the same pid. procfs gives every
// new /proc/PID a fresh inode number; a disk filesystem would hand the freed
// one straight back, so the new directory is made before the old one goes.
func (f *fakeProc) reuse(p fakeProcess) {
	t := f.t
	dir := filepath.Join(f.root, fmt.Sprint(p.pid))
	staging := t.TempDir()
	orig := f.root
	f.root = staging
	f.add(p)
	f.root = orig
	require.NoError(t, os.RemoveAll(dir))
	require.NoError(t, os.Rename(filepath.Join(staging, fmt.Sprint(p.pid)), dir))
}

func (f *fakeProc) remove(pid int) {
	require.NoError(f.t, os.RemoveAll(filepath.Join(f.root, fmt.Sprint(pid))))
}
