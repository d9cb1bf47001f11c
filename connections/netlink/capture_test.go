package netlink

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/connbeat/connbeat/internal/testkit/frames"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/connections/procfs"
	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
)

// The fixture is a real dump captured in a private network namespace so it
// holds only the capture's own sockets: testdata/dump.bin is a sequence of
// datagrams, each a native-endian uint32 length and the bytes recv returned;
// testdata/dump.golden.json is what the decoder made of it, checked at
// capture time against /proc/thread-self/net/tcp{,6}.
const (
	fixtureDump   = "testdata/dump.bin"
	fixtureGolden = "testdata/dump.golden.json"
)

// goldenSocket is Socket in a stable, readable JSON form.
type goldenSocket struct {
	Local, Remote string
	State         string
	UID           uint32
	HasInode      bool
	Info          *model.TCPInfo `json:",omitempty"`
}

func toGolden(sockets []model.Socket) []goldenSocket {
	out := make([]goldenSocket, 0, len(sockets))
	for _, s := range sockets {
		g := goldenSocket{
			Local:    netip.AddrPortFrom(s.LocalIP, s.LocalPort).String(),
			Remote:   netip.AddrPortFrom(s.RemoteIP, s.RemotePort).String(),
			State:    s.State.String(),
			UID:      s.UID,
			HasInode: s.Inode != 0,
		}
		if s.Info != nil {
			info := *s.Info
			g.Info = &info
		}
		out = append(out, g)
	}
	return out
}

// TestCaptureFixture regenerates the fixture when CONNBEAT_CAPTURE=1 (as
// root): CONNBEAT_CAPTURE=1 go test -run TestCaptureFixture ./connections/netlink/
func TestCaptureFixture(t *testing.T) {
	if os.Getenv("CONNBEAT_CAPTURE") != "1" {
		t.Skip("set CONNBEAT_CAPTURE=1 to capture testdata/dump.bin again")
	}
	var captured [][]byte
	var decoded []model.Socket
	var procfs []model.Socket
	err := <-sockettest.InNewNetns(func() (err error) {
		captured, decoded, procfs, err = capture()
		return err
	})
	require.NoError(t, err)
	sockettest.Sort(decoded)
	sockettest.Sort(procfs)
	withoutInfo := make([]model.Socket, len(decoded))
	for i, s := range decoded {
		s.Info = nil
		withoutInfo[i] = s
	}
	require.Equal(t, procfs, withoutInfo, "netlink and procfs disagree at capture time")

	require.NoError(t, os.MkdirAll(filepath.Dir(fixtureDump), 0o755))
	require.NoError(t, frames.Write(fixtureDump, captured))
	js, err := json.MarshalIndent(toGolden(decoded), "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(fixtureGolden, append(js, '\n'), 0o644))
	t.Logf("captured %d datagrams, %d sockets", len(captured), len(decoded))
}

// capture makes the fixture's sockets in the calling thread's (private)
// network namespace and dumps them.
func capture() (captured [][]byte, decoded, fromProcFS []model.Socket, err error) {
	var holder []int
	defer func() {
		for _, fd := range holder {
			unix.Close(fd)
		}
	}()
	listen := func(family int, addr unix.Sockaddr) (int, error) {
		fd, err := unix.Socket(family, unix.SOCK_STREAM, 0)
		if err != nil {
			return 0, err
		}
		holder = append(holder, fd)
		if err := unix.Bind(fd, addr); err != nil {
			return 0, err
		}
		return fd, unix.Listen(fd, 16)
	}
	connect := func(family int, to unix.Sockaddr, ln int, payload string) (int, error) {
		fd, err := unix.Socket(family, unix.SOCK_STREAM, 0)
		if err != nil {
			return 0, err
		}
		holder = append(holder, fd)
		if err := unix.Connect(fd, to); err != nil {
			return 0, err
		}
		a, _, err := unix.Accept(ln)
		holder = append(holder, a)
		if err == nil && payload != "" {
			_, err = unix.Write(fd, []byte(payload))
		}
		return fd, err
	}
	lo4 := [4]byte{127, 0, 0, 1}
	lo6 := [16]byte{15: 1}
	steps := []func() error{
		func() error {
			ln, err := listen(unix.AF_INET, &unix.SockaddrInet4{Port: 4001, Addr: lo4})
			if err == nil {
				_, err = connect(unix.AF_INET, &unix.SockaddrInet4{Port: 4001, Addr: lo4}, ln, "hello, fixture")
			}
			return err
		},
		func() error {
			ln, err := listen(unix.AF_INET6, &unix.SockaddrInet6{Port: 6001, Addr: lo6})
			if err == nil {
				_, err = connect(unix.AF_INET6, &unix.SockaddrInet6{Port: 6001, Addr: lo6}, ln, "hello over IPv6")
			}
			return err
		},
		func() error {
			// Dual-stack listener reached over IPv4: IPv4-mapped sockets.
			ln, err := listen(unix.AF_INET6, &unix.SockaddrInet6{Port: 6002})
			if err == nil {
				_, err = connect(unix.AF_INET, &unix.SockaddrInet4{Port: 6002, Addr: lo4}, ln, "mapped")
			}
			return err
		},
		func() error {
			// Closed by the client first, with nothing unread (that would
			// reset it): TIME_WAIT on the client side.
			ln, err := listen(unix.AF_INET, &unix.SockaddrInet4{Port: 4002, Addr: lo4})
			if err != nil {
				return err
			}
			fd, err := connect(unix.AF_INET, &unix.SockaddrInet4{Port: 4002, Addr: lo4}, ln, "")
			if err != nil {
				return err
			}
			unix.Close(fd)
			holder[len(holder)-2] = -1
			srv := holder[len(holder)-1]
			unix.Close(srv)
			holder[len(holder)-1] = -1
			return nil
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, nil, nil, err
		}
	}
	time.Sleep(200 * time.Millisecond) // let the closing pair settle in TIME_WAIT

	c, err := dial()
	if err != nil {
		return nil, nil, nil, err
	}
	defer c.close()
	dec := decoder{wantInfo: true}
	for _, fam := range []uint8{familyINET, familyINET6} {
		seq, err := c.send(&request{Family: fam, Protocol: protoTCP, Ext: 1 << (attrInfo - 1), States: allStates}, flagDump)
		if err != nil {
			return nil, nil, nil, err
		}
		for done := false; !done; {
			buf, err := c.recv()
			if err != nil {
				return nil, nil, nil, err
			}
			captured = append(captured, append([]byte(nil), buf...))
			if done, err = dec.feed(buf, seq); err != nil {
				return nil, nil, nil, err
			}
		}
	}
	pf, err := procfs.Open("/proc/thread-self")
	if err != nil {
		return nil, nil, nil, err
	}
	fromProcFS, err = pf.Sockets(context.Background(), nil)
	return captured, dec.sockets, fromProcFS, err
}
