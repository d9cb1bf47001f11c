package connections

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/logp/logptest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/connections/bpfiter"
	"github.com/connbeat/connbeat/connections/netlink"
	"github.com/connbeat/connbeat/internal/testkit/child"
	"github.com/connbeat/connbeat/internal/testkit/kerneltest"
	"github.com/connbeat/connbeat/internal/testkit/sandbox"
	"github.com/connbeat/connbeat/internal/testkit/sockettest"
	"github.com/connbeat/connbeat/model"
)

func sourceOptions(name string, tcpInfo bool, logger *logp.Logger) Options {
	return Options{Name: name, TCPInfo: tcpInfo, ProcPath: "/proc", Logger: logger}
}

// TestSelectSource opens each configured source on the real kernel.
func TestSelectSource(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)

	tests := []struct {
		source   string
		tcpInfo  bool
		wantName string
	}{
		{ProcFS, false, "procfs"},
		{Netlink, false, "netlink"},
		{Netlink, true, "netlink"},
		{BPF, false, "bpf"},
		{Auto, false, "netlink"},
		{Auto, true, "netlink"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/tcp_info=%v", tt.source, tt.tcpInfo), func(t *testing.T) {
			requireSource(t, tt.wantName)
			logger, logs := logptest.NewTestingLoggerWithObserver(t, "test")
			src, err := Open(sourceOptions(tt.source, tt.tcpInfo, logger))
			require.NoError(t, err)
			defer src.Close()
			assert.Equal(t, tt.wantName, src.Name())
			assert.Zero(t, logs.Len(), "nothing to say when the source opens")

			sockets, err := src.Sockets(context.Background(), nil)
			require.NoError(t, err)
			var client *model.Socket
			for i := range sockets {
				if sockets[i].RemotePort == port && sockets[i].State == model.StateEstablished {
					client = &sockets[i]
				}
			}
			require.NotNil(t, client, "the test's connection is listed")
			assert.Equal(t, tt.tcpInfo, client.Info != nil, "tcp_info follows the option")
		})
	}
}

// requireSource skips the test when this host cannot run the source name
// (bpf, netlink) for want of a privilege or kernel feature, and fails it
// when the source is broken: a program the verifier refuses, a dump
// request the kernel refuses.
func requireSource(t *testing.T, name string) {
	t.Helper()
	var (
		src Source
		err error
	)
	switch name {
	case BPF:
		src, err = bpfiter.Open()
		kerneltest.RequireBPF(t, err)
	case Netlink:
		src, err = netlink.Open(netlink.Options{})
		kerneltest.RequireNetlink(t, err)
	default:
		return
	}
	require.NoError(t, src.Close())
}

// TestSelectSourceWithoutNetlink runs itself again in a child process whose
// seccomp filter makes socket(AF_NETLINK) fail with EPERM, as a container
// runtime's policy can: auto must fall back to procfs with one log line,
// and a forced netlink must fail with an UnavailableError.
func TestSelectSourceWithoutNetlink(t *testing.T) {
	child.RunTest(t, selectWithoutNetlink)
}

func selectWithoutNetlink(t *testing.T) {
	if err := sandbox.DenySocketFamily(unix.AF_NETLINK, unix.EPERM); err != nil {
		t.Skipf("cannot install a seccomp filter: %v", err)
	}
	_, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_SOCK_DIAG)
	require.ErrorIs(t, err, unix.EPERM, "the filter is in place")

	for _, tcpInfo := range []bool{false, true} {
		logger, logs := logptest.NewTestingLoggerWithObserver(t, "test")
		src, err := Open(sourceOptions(Auto, tcpInfo, logger))
		require.NoError(t, err)
		assert.Equal(t, "procfs", src.Name())
		sockets, err := src.Sockets(context.Background(), nil)
		require.NoError(t, err)
		assert.NotEmpty(t, sockets)
		src.Close()

		entries := logs.TakeAll()
		require.Len(t, entries, 1, "one log line on fallback")
		assert.Contains(t, entries[0].Message, "socket source netlink unavailable")
		assert.Contains(t, entries[0].Message, "operation not permitted")
		assert.Contains(t, entries[0].Message, "falling back to procfs")
		if tcpInfo {
			assert.Contains(t, entries[0].Message, "no tcp_info")
		} else {
			assert.NotContains(t, entries[0].Message, "tcp_info")
		}
	}

	logger, logs := logptest.NewTestingLoggerWithObserver(t, "test")
	_, err = Open(sourceOptions(Netlink, false, logger))
	require.Error(t, err)
	assert.True(t, model.IsUnavailable(err), "%v", err)
	assert.ErrorIs(t, err, unix.EPERM)
	assert.Zero(t, logs.Len(), "a forced source fails instead of logging")
}

// TestSelectSourceWithoutBPF runs itself again in a child process whose
// seccomp filter makes bpf(2) fail with EPERM, as Docker's default profile
// does: auto must stay on netlink, saying why once when the host is big
// enough for bpf, and a forced bpf source must fail with an
// UnavailableError naming the capabilities.
func TestSelectSourceWithoutBPF(t *testing.T) {
	child.RunTest(t, selectWithoutBPF)
}

func selectWithoutBPF(t *testing.T) {
	if err := sandbox.DenySyscall(unix.SYS_BPF, unix.EPERM); err != nil {
		t.Skipf("cannot install a seccomp filter: %v", err)
	}
	requireSource(t, Netlink)
	logger, logs := logptest.NewTestingLoggerWithObserver(t, "test")
	src, err := Open(sourceOptions(Auto, false, logger))
	require.NoError(t, err)
	defer src.Close()
	assert.Equal(t, "netlink", src.Name())
	assert.Zero(t, logs.Len(), "a small host never tries the bpf source")

	// A host over the threshold tries it once, says why it stays on
	// netlink, and does not try again.
	auto := src.(*autoSource)
	auto.up = 1
	for range 3 {
		sockets, err := src.Sockets(context.Background(), nil)
		require.NoError(t, err)
		assert.NotEmpty(t, sockets)
		assert.Equal(t, "netlink", src.Name())
	}
	entries := logs.TakeAll()
	require.Len(t, entries, 1, "one log line for the source passed over")
	assert.Contains(t, entries[0].Message, "socket source bpf unavailable")
	assert.Contains(t, entries[0].Message, "CAP_BPF")
	assert.Contains(t, entries[0].Message, "staying on netlink")

	_, err = Open(sourceOptions(BPF, false, logger))
	require.Error(t, err)
	assert.True(t, model.IsUnavailable(err), "%v", err)
	assert.ErrorIs(t, err, unix.EPERM)
	assert.Zero(t, logs.Len(), "a forced source fails instead of logging")
}

// TestOpenTransports opens each source with connbeat.protocols' sets on
// the real kernel beside the test's TCP and UDP sockets: each lists the
// transports asked for and nothing of the others, and with both the same
// sockets of the test as every other source.
func TestOpenTransports(t *testing.T) {
	lb := sockettest.New(t)
	lb.UDPFamilies()
	lb.Connect(lb.Listen("tcp4", "127.0.0.1:0"), "127.0.0.1", 2)
	var first []model.Socket
	for _, name := range []string{ProcFS, Netlink, BPF, Auto} {
		for _, set := range []model.Transports{model.TransportsOf(model.TCP), model.TransportsOf(model.UDP), model.AllTransports} {
			t.Run(name+"/"+set.String(), func(t *testing.T) {
				requireSource(t, name)
				opts := sourceOptions(name, false, logp.NewNopLogger())
				opts.Transports = set
				src, err := Open(opts)
				require.NoError(t, err)
				defer src.Close()
				got, err := src.Sockets(context.Background(), nil)
				require.NoError(t, err)
				for _, s := range got {
					require.True(t, set.Has(s.Transport), "%+v", s)
				}
				ours := lb.Ours(got)
				want := map[model.Transport]int{model.TCP: 5, model.UDP: sockettest.UDPCount}
				n := 0
				for tr, c := range want {
					if set.Has(tr) {
						n += c
					}
				}
				assert.Len(t, ours, n)
				if set == model.AllTransports {
					if first == nil {
						first = ours
					}
					assert.Equal(t, first, ours, "%s lists other sockets than procfs", name)
				}
			})
		}
	}
}
