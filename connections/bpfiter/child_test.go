package bpfiter

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/internal/testkit/child"
	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
)

// The test binary runs itself as a child, as another user, to own sockets
// under another uid and to find out what Open says without privileges.
var (
	// listenChild runs childListen; its argument is the address to dial.
	listenChild = child.Helper{Name: "bpfiter-listen", Main: func(args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("want the peer's address, got %q", args)
		}
		return childListen(args[0])
	}}
	// openChild runs Open and prints an openResult.
	openChild = child.Helper{Name: "bpfiter-open", Main: func([]string) error {
		_, err := Open()
		out := openResult{Opened: err == nil, Unavailable: model.IsUnavailable(err)}
		if err != nil {
			out.Err = err.Error()
		}
		_ = json.NewEncoder(os.Stdout).Encode(out)
		return nil
	}}
)

var nobody = &syscall.Credential{Uid: 65534, Gid: 65534}

func TestMain(m *testing.M) {
	child.Serve(listenChild, openChild)
	os.Exit(m.Run())
}

type openResult struct {
	Opened, Unavailable bool
	Err                 string
}

// childListen listens on 127.0.0.1 twice, the second time with
// TCP_DEFER_ACCEPT, and leaves two connections to peer closed first: one
// orphaned full socket in FIN_WAIT2 (TCP_LINGER2 longer than TIME_WAIT)
// and one timewait sock. It prints the first listener's port and inode,
// the second's port and its clients' ports, then waits for its stdin to
// close.
func childListen(peer string) error {
	var ports []string
	for _, deferAccept := range []int{0, 60} {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		f, err := ln.(*net.TCPListener).File()
		if err != nil {
			return err
		}
		var st unix.Stat_t
		err = errors.Join(unix.Fstat(int(f.Fd()), &st),
			unix.SetsockoptInt(int(f.Fd()), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAccept))
		f.Close()
		if err != nil {
			return err
		}
		ports = append(ports, fmt.Sprint(port(ln.Addr())))
		if deferAccept == 0 {
			ports = append(ports, fmt.Sprint(st.Ino))
		}
	}
	for _, linger2 := range []int{120, 0} {
		c, err := net.Dial("tcp4", peer)
		if err != nil {
			return err
		}
		if linger2 != 0 {
			f, err := c.(*net.TCPConn).File()
			if err != nil {
				return err
			}
			err = unix.SetsockoptInt(int(f.Fd()), unix.IPPROTO_TCP, unix.TCP_LINGER2, linger2)
			f.Close()
			if err != nil {
				return err
			}
		}
		ports = append(ports, fmt.Sprint(port(c.LocalAddr())))
		c.Close()
	}
	fmt.Println(strings.Join(ports, " "))
	_, err := io.Copy(io.Discard, os.Stdin)
	return err
}

// childCmd returns a command that runs this test binary as nobody as the
// helper h with args. The binary is copied where nobody may run it (go
// test builds it in a directory only root can enter).
func childCmd(t *testing.T, h child.Helper, args ...string) *exec.Cmd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running a child as another user needs root")
	}
	cmd, err := h.Command(context.Background(), args...)
	require.NoError(t, err)
	dir, err := os.MkdirTemp("", "bpfiter-child-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	exe := filepath.Join(dir, "bpfiter.test")
	in, err := os.Open(cmd.Path)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())

	cmd.Path, cmd.Args[0] = exe, exe
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
	return cmd
}

// TestKernelOtherUID checks the uid and inode of sockets owned by another
// user, a child running as nobody: its listeners, a connection it has not
// accepted (cloned from the listener: its uid, no file), a request sock of
// its TCP_DEFER_ACCEPT listener (the iterator gives the listener's uid; 0
// is reported, as netlink does), its orphaned FIN_WAIT2 socket (no
// file; the child's uid, or 0 on kernels that read it from the file) and
// its timewait sock (uid 0), each as netlink reports it.
func TestKernelOtherUID(t *testing.T) {
	src := openKernel(t)
	lb := sockettest.New(t)
	peer := lb.Listen("tcp4", "127.0.0.1:0")

	cmd := childCmd(t, listenChild, peer.Addr().String())
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "child's report")
	var childPort, deferPort, orphanPort, twPort uint16
	var childIno uint64
	_, err = fmt.Sscan(line, &childPort, &childIno, &deferPort, &orphanPort, &twPort)
	require.NoError(t, err, "child's report %q", line)
	clients := map[uint16]*net.TCPConn{}
	for _, p := range []uint16{childPort, deferPort} {
		ap := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p)
		lb.Mark(ap)
		c, err := net.Dial("tcp4", ap.String())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		clients[port(c.LocalAddr())] = c.(*net.TCPConn)
	}

	got := sameAsNetlink(t, src, lb, func(s []model.Socket) bool {
		return countState(s, model.StateFinWait2) == 2 && countState(s, model.StateEstablished) == 3 &&
			countState(s, model.StateSynRecv) == 1
	})
	euid := uint32(os.Geteuid())
	var seen int
	for _, s := range got {
		switch {
		case s.State == model.StateListen && s.LocalPort == childPort:
			seen++
			assert.Equal(t, nobody.Uid, s.UID, "child's listener")
			assert.Equal(t, childIno, s.Inode, "child's listener")
		case s.State == model.StateListen && s.LocalPort == deferPort:
			seen++
			assert.Equal(t, nobody.Uid, s.UID, "child's deferring listener")
			assert.NotZero(t, s.Inode, "child's deferring listener")
		case s.State == model.StateEstablished && s.LocalPort == childPort:
			seen++
			assert.Equal(t, nobody.Uid, s.UID, "connection queued on the child's listener")
			assert.Zero(t, s.Inode, "connection queued on the child's listener")
		case s.State == model.StateSynRecv:
			seen++
			assert.Equal(t, deferPort, s.LocalPort, "request sock")
			assert.Zero(t, s.UID, "request sock of a listener of uid %d", nobody.Uid)
			assert.Zero(t, s.Inode, "request sock")
		case s.State == model.StateEstablished && clients[s.LocalPort] != nil:
			seen++
			assert.Equal(t, euid, s.UID, "the test's client")
			assert.Equal(t, sockettest.Inode(t, clients[s.LocalPort]), s.Inode, "the test's client")
		case s.State == model.StateFinWait2 && s.LocalPort == orphanPort:
			seen++
			assert.Zero(t, s.Inode, "orphan")
			// The kernel reports an orphan's uid from sk_uid, which
			// close() keeps, on the kernels this runs on (6.x); older
			// ones read it from the gone file: 0. Netlink says the same
			// (sameAsNetlink), so no kernel's answer is lost.
			assert.Contains(t, []uint32{nobody.Uid, 0}, s.UID, "orphan")
			if s.UID == 0 {
				t.Logf("this kernel reports the orphan of uid %d with uid 0", nobody.Uid)
			}
		case s.State == model.StateFinWait2 && s.LocalPort == twPort:
			seen++
			assert.Zero(t, s.Inode, "timewait sock")
			assert.Zero(t, s.UID, "timewait sock")
		}
	}
	assert.Equal(t, 8, seen, "sockets of the child and to it: %+v", got)
}

// TestKernelUnavailableUnprivileged runs Open in a child without
// privileges: it must fail with an UnavailableError that says what is
// missing.
func TestKernelUnavailableUnprivileged(t *testing.T) {
	openKernel(t) // only meaningful where root can open it
	cmd := childCmd(t, openChild)
	out, err := cmd.Output()
	require.NoError(t, err)
	var res openResult
	require.NoError(t, json.Unmarshal(out, &res), "child said %q", out)
	require.False(t, res.Opened, "opened without privileges")
	assert.True(t, res.Unavailable, "not an UnavailableError: %s", res.Err)
	assert.Contains(t, res.Err, "CAP_BPF")
	assert.Contains(t, res.Err, "operation not permitted")
	t.Logf("unprivileged Open: %s", res.Err)
}
