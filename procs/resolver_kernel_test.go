package procs

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/connections/procfs"
	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
)

func kernelSockets(t *testing.T) []model.Socket {
	t.Helper()
	src, err := procfs.Open("/proc")
	require.NoError(t, err)
	s, err := src.Sockets(context.Background(), nil)
	require.NoError(t, err)
	return s
}

// startHolder starts `sleep` holding f as fd 3.
func startHolder(t *testing.T, f *os.File) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.ExtraFiles = []*os.File{f}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// TestResolverKernelOwners joins real sockets on the running kernel: one the
// test process shares with a child it forked (attributed to the parent, the
// topmost holder), and one only the child holds.
func TestResolverKernelOwners(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	lnFile, err := ln.(*net.TCPListener).File()
	require.NoError(t, err)
	shared := startHolder(t, lnFile)
	lnFile.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	connIno := sockettest.Inode(t, c.(*net.TCPConn))
	cFile, err := c.(*net.TCPConn).File()
	require.NoError(t, err)
	only := startHolder(t, cFile)
	cFile.Close()
	c.Close() // now only the child holds the client socket

	r := newResolver(t, "/proc", MetadataOptions{Cmdline: true})
	stats, err := r.Refresh(context.Background(), kernelSockets(t))
	require.NoError(t, err)
	assert.Greater(t, stats.Processes, 2)

	p, owners := r.Owner(sockettest.Inode(t, ln.(*net.TCPListener)))
	require.NotNil(t, p)
	assert.Equal(t, 2, owners, "test process and its child hold the listener")
	assert.Equal(t, int32(os.Getpid()), p.PID, "the parent is the topmost holder")
	exe, err := os.Executable()
	require.NoError(t, err)
	assert.Equal(t, filepath.Base(exe), p.Binary)
	_ = shared

	p, owners = r.Owner(connIno)
	require.NotNil(t, p)
	assert.Equal(t, 1, owners)
	assert.Equal(t, int32(only.Process.Pid), p.PID)
	assert.Equal(t, "sleep", p.Binary)
	assert.Equal(t, []string{"sleep", "60"}, p.Args)
	assert.Equal(t, int32(os.Getpid()), p.PPID)
	assert.WithinDuration(t, time.Now(), p.StartTime, time.Minute)
	assert.Equal(t, uint32(os.Getuid()), p.UID)
}

// TestResolverKernelChurn refreshes while hundreds of short-lived children
// that hold a socket start and exit: processes vanishing mid-scan are not
// errors, and the map ends up with only live owners.
func TestResolverKernelChurn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	lnFile, err := ln.(*net.TCPListener).File()
	require.NoError(t, err)
	defer lnFile.Close()

	r := newResolver(t, "/proc", MetadataOptions{Cmdline: true})
	ctx := context.Background()

	// Children keep coming until both enough of them have run and enough
	// refreshes have raced them, however fast or slow this machine is.
	const minChildren, minRefreshes = 400, 5
	var spawned atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				cmd := exec.Command("sh", "-c", "exit 0")
				cmd.ExtraFiles = []*os.File{lnFile}
				if err := cmd.Run(); err != nil {
					t.Errorf("child: %v", err)
					return
				}
				spawned.Add(1)
			}
		}()
	}

	sockets := kernelSockets(t)
	refreshes := 0
	for ; refreshes < minRefreshes || spawned.Load() < minChildren; refreshes++ {
		_, err := r.Refresh(ctx, sockets)
		require.NoError(t, err, "refresh %d", refreshes)
		// Owner reads metadata lazily, racing the exits too.
		p, _ := r.Owner(sockettest.Inode(t, ln.(*net.TCPListener)))
		if p != nil {
			assert.NotZero(t, p.PID)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d refreshes while %d children started and exited", refreshes, spawned.Load())

	_, err = r.Refresh(ctx, kernelSockets(t))
	require.NoError(t, err)
	p, owners := r.Owner(sockettest.Inode(t, ln.(*net.TCPListener)))
	require.NotNil(t, p)
	assert.Equal(t, int32(os.Getpid()), p.PID)
	assert.Equal(t, 1, owners, "exited children are no longer owners")
}

// TestResolverKernelExec: bash connects (its /dev/tcp fd has no
// close-on-exec), is joined, then execs sleep, which keeps the socket, the
// pid and the start time. What Current gives for the event names sleep.
func TestResolverKernelExec(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash: it opens the connection through /dev/tcp")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	cmd := exec.Command("bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d; read -r go; exec sleep 60", port))
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	server, err := ln.Accept()
	require.NoError(t, err)
	defer server.Close()

	// The client end is the socket whose peer is our accepted one.
	remote := server.RemoteAddr().(*net.TCPAddr)
	var ino uint64
	for _, s := range kernelSockets(t) {
		if int(s.LocalPort) == remote.Port && int(s.RemotePort) == port {
			ino = s.Inode
		}
	}
	require.NotZero(t, ino)

	r := newResolver(t, "/proc", MetadataOptions{Cmdline: true})
	ctx := context.Background()
	_, err = r.Refresh(ctx, kernelSockets(t))
	require.NoError(t, err)
	p, _ := r.Owner(ino)
	require.NotNil(t, p)
	require.Equal(t, "bash", p.Binary)

	_, err = stdin.Write([]byte("go\n"))
	require.NoError(t, err)
	comm := filepath.Join("/proc", fmt.Sprint(cmd.Process.Pid), "comm")
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(comm)
		return string(b) == "sleep\n"
	}, 30*time.Second, 10*time.Millisecond)

	_, err = r.Refresh(ctx, kernelSockets(t))
	require.NoError(t, err)
	joined, _ := r.Owner(ino)
	now := r.Current(joined)
	require.NotNil(t, now)
	assert.Equal(t, "sleep", now.Binary)
	assert.Equal(t, []string{"sleep", "60"}, now.Args)
	assert.Equal(t, p.StartTime, now.StartTime)
	assert.Equal(t, int32(cmd.Process.Pid), now.PID)
}
