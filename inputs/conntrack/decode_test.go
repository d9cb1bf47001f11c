package conntrack

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/connbeat/connbeat/internal/testkit/frames"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	ct "github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/model"
)

// The fixture is real ctnetlink traffic captured in a private network
// namespace: testdata/events.bin is a sequence of datagrams, each a
// native-endian uint32 length and the bytes recv returned (events of TCP,
// UDP and ICMP flows over IPv4 and IPv6, then the DESTROYs of a table
// flush, with counters and times); testdata/events.golden.json is what the
// decoder made of it.
const (
	fixtureEvents = "testdata/events.bin"
	fixtureGolden = "testdata/events.golden.json"
)

// decodeAll decodes datagrams as the input does.
func decodeAll(frames [][]byte) ([]model.Flow, error) {
	in := &Input{m: newMetrics(nil), log: nopLogger()}
	for _, f := range frames {
		in.decode(f)
	}
	var err error
	if n := in.m.decodeErrors.Get(); n > 0 {
		err = errors.New("undecodable messages")
	}
	return in.batch, err
}

// TestDecodeFixture decodes the captured events to what the golden file
// says, field for field.
func TestDecodeFixture(t *testing.T) {
	flows, err := decodeAll(frames.Read(t, fixtureEvents))
	require.NoError(t, err)
	// What the fixture must show for the tests above to mean anything.
	protos := map[string]bool{}
	var counted, timed, destroys int
	for _, f := range flows {
		protos[model.ProtoName(f.Original.Proto)+map[bool]string{true: "6", false: "4"}[f.Original.Src.Is6()]] = true
		if f.OriginalCounter.Bytes > 0 && f.ReplyCounter.Bytes > 0 {
			counted++
		}
		if !f.Start.IsZero() {
			timed++
		}
		if f.Event == model.FlowDestroy {
			destroys++
		}
	}
	assert.Equal(t, map[string]bool{"tcp4": true, "tcp6": true, "udp4": true, "udp6": true, "icmp4": true, "icmpv66": true}, protos)
	assert.Positive(t, counted)
	assert.Positive(t, timed)
	assert.Positive(t, destroys)

	raw, err := os.ReadFile(fixtureGolden)
	require.NoError(t, err)
	var want []model.Flow
	require.NoError(t, json.Unmarshal(raw, &want))
	require.Equal(t, len(want), len(flows))
	for i := range want {
		// Times go through JSON as UTC; compare instants.
		assert.True(t, want[i].Start.Equal(flows[i].Start), "start of flow %d", i)
		assert.True(t, want[i].Stop.Equal(flows[i].Stop), "stop of flow %d", i)
		want[i].Start, want[i].Stop, flows[i].Start, flows[i].Stop = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	}
	assert.Equal(t, want, flows)
}

// FuzzDecode feeds arbitrary datagrams to the input's decoding (the
// framing is connbeat's, the attributes ti-mo/conntrack's): it must never
// panic, and a flow it returns has both tuples.
func FuzzDecode(f *testing.F) {
	for _, frame := range frames.Read(f, fixtureEvents) {
		f.Add(frame)
	}
	f.Add([]byte{})
	f.Add(make([]byte, nlHeaderLen))
	f.Fuzz(func(t *testing.T, b []byte) {
		flows, _ := decodeAll([][]byte{b})
		if len(flows) > len(b)/nlHeaderLen {
			t.Fatalf("%d flows from %d bytes", len(flows), len(b))
		}
		for _, fl := range flows {
			if !fl.Original.Src.IsValid() || !fl.Reply.Src.IsValid() {
				t.Fatalf("flow without tuples: %+v", fl)
			}
			if fl.Event < model.FlowNew || fl.Event > model.FlowDestroy {
				t.Fatalf("flow with event %v", fl.Event)
			}
		}
	})
}

// FuzzSplitMessages: the splitter never reads past a length and never
// yields more messages than headers fit.
func FuzzSplitMessages(f *testing.F) {
	for _, frame := range frames.Read(f, fixtureEvents)[:3] {
		f.Add(frame)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		_ = splitMessages(b, func(m message) error {
			n++
			if len(m.Data) > len(b)-nlHeaderLen {
				t.Fatalf("message of %d bytes from %d", len(m.Data), len(b))
			}
			return nil
		})
		if n > len(b)/nlHeaderLen {
			t.Fatalf("%d messages from %d bytes", n, len(b))
		}
	})
}

// TestCaptureFixture makes the fixture again when CONNBEAT_CAPTURE=1 (as
// root, with nft): CONNBEAT_CAPTURE=1 go test -run TestCaptureFixture ./inputs/conntrack/
func TestCaptureFixture(t *testing.T) {
	if os.Getenv("CONNBEAT_CAPTURE") != "1" {
		t.Skip("set CONNBEAT_CAPTURE=1 to capture testdata/events.bin again")
	}
	inNewNetns(t)
	// Children forked from this thread share its namespace.
	nft := exec.Command("nft", "-f", "-")
	nft.Stdin = strings.NewReader("table inet capture {\n chain out {\n type filter hook output priority 0;\n ct state new counter\n }\n}\n")
	out, err := nft.CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, name := range []string{"nf_conntrack_acct", "nf_conntrack_timestamp"} {
		require.NoError(t, writeSysctl("/proc/sys/net/netfilter/"+name, "1"))
	}
	// Ping sockets for root, in this namespace only.
	require.NoError(t, writeSysctl("/proc/sys/net/ipv4/ping_group_range", "0 0"))
	s, err := openSocket()
	require.NoError(t, err)
	defer s.close()
	_, err = s.setReceiveBuffer(8 << 20)
	require.NoError(t, err)
	require.NoError(t, s.join([]int{groupNew, groupUpdate, groupDestroy}))

	for _, network := range []string{"tcp4", "tcp6"} {
		addr := map[string]string{"tcp4": "127.0.0.1:0", "tcp6": "[::1]:0"}[network]
		ln, err := net.Listen(network, addr)
		require.NoError(t, err)
		c, err := net.Dial(network, ln.Addr().String())
		require.NoError(t, err)
		srv, err := ln.Accept()
		require.NoError(t, err)
		_, err = c.Write(make([]byte, 1000))
		require.NoError(t, err)
		_, err = io.ReadFull(srv, make([]byte, 1000))
		require.NoError(t, err)
		c.Close()
		srv.Close()
		ln.Close()
	}
	for _, network := range []string{"udp4", "udp6"} {
		addr := map[string]string{"udp4": "127.0.0.1:0", "udp6": "[::1]:0"}[network]
		srv, err := net.ListenPacket(network, addr)
		require.NoError(t, err)
		c, err := net.Dial(network, srv.LocalAddr().String())
		require.NoError(t, err)
		_, err = c.Write(make([]byte, 100))
		require.NoError(t, err)
		buf := make([]byte, 200)
		_, from, err := srv.ReadFrom(buf)
		require.NoError(t, err)
		_, err = srv.WriteTo(buf[:50], from)
		require.NoError(t, err)
		_, err = c.Read(buf)
		require.NoError(t, err)
		c.Close()
		srv.Close()
	}
	for _, ping := range []struct {
		family, proto int
		to            unix.Sockaddr
		typ           byte
	}{
		{unix.AF_INET, unix.IPPROTO_ICMP, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}, 8},
		{unix.AF_INET6, unix.IPPROTO_ICMPV6, &unix.SockaddrInet6{Addr: [16]byte{15: 1}}, 128},
	} {
		fd, err := unix.Socket(ping.family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, ping.proto)
		require.NoError(t, err, "ping socket")
		require.NoError(t, unix.Sendto(fd, []byte{ping.typ, 0, 0, 0, 0, 0, 0, 1}, 0, ping.to))
		unix.Close(fd)
	}
	time.Sleep(200 * time.Millisecond)
	c, err := ct.Dial(nil)
	require.NoError(t, err)
	require.NoError(t, c.Flush()) // DESTROY of every entry, with counters
	c.Close()
	time.Sleep(200 * time.Millisecond)

	var captured [][]byte
	for {
		b, err := s.recv(false, time.Time{})
		if errors.Is(err, unix.EAGAIN) {
			break
		}
		require.NoError(t, err)
		captured = append(captured, append([]byte(nil), b...))
	}
	flows, err := decodeAll(captured)
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll("testdata", 0o755))
	require.NoError(t, frames.Write(fixtureEvents, captured))
	js, err := json.MarshalIndent(flows, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(fixtureGolden, append(js, '\n'), 0o644))
	t.Logf("captured %d datagrams, %d flows", len(captured), len(flows))
}
