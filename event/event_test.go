package event

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/connbeat/connbeat/model"
	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/beats/v7/libbeat/processors/add_process_metadata"
	"github.com/elastic/beats/v7/libbeat/processors/communityid"
	conf "github.com/elastic/elastic-agent-libs/config"
	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/mapstr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	ts    = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	start = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	host  = Host{Hostname: "web-1", Name: "web-1", LocalIPs: []string{"10.0.0.1", "fd00::1"}}
	proc  = &model.Process{
		PID: 4242, PPID: 1, Name: "curl", Binary: "curl", Executable: "/usr/bin/curl",
		Args: []string{"curl", "https://example.com"}, StartTime: start, UID: 1000, User: "alice",
		Environ: map[string]string{"SERVICE_NAME": "probe"},
	}
)

func report(kind model.Kind, dir model.Direction, local string, lport uint16, remote string, rport uint16, p *model.Process) *model.Report {
	return &model.Report{
		Record: model.Record{
			Kind: kind, Direction: dir, Process: p, Owners: 1,
			Socket: model.Socket{
				LocalIP: netip.MustParseAddr(local), LocalPort: lport,
				RemoteIP: netip.MustParseAddr(remote), RemotePort: rport,
				State: map[model.Kind]model.State{model.Listener: model.StateListen, model.Connection: model.StateEstablished}[kind],
			},
		},
		Sockets: 2,
	}
}

func TestClassicOutbound(t *testing.T) {
	ev := NewBuilder(Classic, host).Build(report(model.Connection, model.Outbound, "10.0.0.1", 40000, "93.184.216.34", 443, proc), ts)
	assert.Equal(t, ts, ev.Timestamp)
	assert.Equal(t, mapstr.M{
		"type":        "connbeat",
		"direction":   "outbound",
		"local_ip":    "10.0.0.1",
		"local_port":  uint16(40000),
		"remote_ip":   "93.184.216.34",
		"remote_port": uint16(443),
		"beat":        mapstr.M{"hostname": "web-1", "name": "web-1", "local_ips": []string{"10.0.0.1", "fd00::1"}},
		"local_process": mapstr.M{
			"pid": int32(4242), "ppid": int32(1), "name": "curl", "binary": "curl", "exe": "/usr/bin/curl",
			"cmdline": "curl https://example.com", "start_time": start, "uid": uint32(1000), "user": "alice",
			"environ": mapstr.M{"SERVICE_NAME": "probe"},
		},
		"connbeat": mapstr.M{"kind": "connection", "direction": "outbound", "sockets": 2, "tcp_state": "established"},
	}, ev.Fields)
}

func TestClassicListenerWithoutProcess(t *testing.T) {
	r := report(model.Listener, model.Listening, "::", 22, "::", 0, nil)
	r.Owners = 0
	r.Socket.NetNS = 4026531840
	ev := NewBuilder(Classic, host).Build(r, ts)
	assert.Equal(t, mapstr.M{
		"type":       "connbeat",
		"direction":  "listening",
		"local_ip":   "::",
		"local_port": uint16(22),
		"beat":       mapstr.M{"hostname": "web-1", "name": "web-1", "local_ips": []string{"10.0.0.1", "fd00::1"}},
		"connbeat":   mapstr.M{"kind": "listener", "direction": "listening", "sockets": 2, "tcp_state": "listen", "netns": uint64(4026531840)},
	}, ev.Fields, "no local_process when the owner could not be read")
}

func TestECSInbound(t *testing.T) {
	r := report(model.Connection, model.Inbound, "fd00::1", 443, "fd00::9", 50000, proc)
	r.Owners = 3
	r.Socket.NetNS = 4026532281
	r.Socket.Info = &model.TCPInfo{RTTMicros: 120, RTTVarMicros: 30, TotalRetransmits: 2, BytesAcked: 1000, BytesReceived: 500, SegsIn: 7, SegsOut: 9}
	ev := NewBuilder(ECS, host).Build(r, ts)
	local := mapstr.M{"ip": "fd00::1", "port": uint16(443)}
	remote := mapstr.M{"ip": "fd00::9", "port": uint16(50000)}
	assert.Equal(t, mapstr.M{
		"source": remote, "client": remote,
		"destination": local, "server": local,
		"network": mapstr.M{"transport": "tcp", "type": "ipv6", "iana_number": "6", "direction": "ingress"},
		"related": mapstr.M{"ip": []string{"fd00::1", "fd00::9"}},
		"host":    mapstr.M{"ip": []string{"10.0.0.1", "fd00::1"}},
		"process": mapstr.M{
			"pid": int32(4242), "parent": mapstr.M{"pid": int32(1)}, "name": "curl", "executable": "/usr/bin/curl",
			"args": []string{"curl", "https://example.com"}, "args_count": 2, "command_line": "curl https://example.com",
			"start": start, "env_vars": mapstr.M{"SERVICE_NAME": "probe"},
		},
		"user": mapstr.M{"id": "1000", "name": "alice"},
		"connbeat": mapstr.M{"kind": "connection", "direction": "inbound", "sockets": 2, "tcp_state": "established", "owners": 3, "netns": uint64(4026532281),
			"tcp_info": mapstr.M{"rtt_us": uint32(120), "rtt_var_us": uint32(30), "retransmits": uint32(0), "total_retransmits": uint32(2),
				"bytes_acked": uint64(1000), "bytes_received": uint64(500), "segs_in": uint32(7), "segs_out": uint32(9)}},
	}, ev.Fields)
}

func TestECSDirections(t *testing.T) {
	b := NewBuilder(ECS, host)
	out := b.Build(report(model.Connection, model.Outbound, "10.0.0.1", 40000, "10.0.0.9", 443, nil), ts).Fields
	assert.Equal(t, "egress", mustGet(t, out, "network.direction"))
	assert.Equal(t, "10.0.0.1", mustGet(t, out, "source.ip"))
	assert.Equal(t, uint16(443), mustGet(t, out, "destination.port"))
	assert.Equal(t, "ipv4", mustGet(t, out, "network.type"))
	_, err := out.GetValue("process")
	assert.Error(t, err, "no process fields without an owner")

	ln := b.Build(report(model.Listener, model.Listening, "0.0.0.0", 80, "0.0.0.0", 0, proc), ts).Fields
	assert.Equal(t, "listening", mustGet(t, ln, "network.direction"))
	assert.Equal(t, mapstr.M{"ip": "0.0.0.0", "port": uint16(80)}, mustGet(t, ln, "server"))
	_, err = ln.GetValue("source")
	assert.Error(t, err, "a listener has no source")
}

func mustGet(t *testing.T, m mapstr.M, key string) interface{} {
	t.Helper()
	v, err := m.GetValue(key)
	require.NoError(t, err, key)
	return v
}

// communityID computes a Community ID v1 (seed 0) by the published
// specification, independently of libbeat's implementation.
func communityID(src, dst netip.Addr, sport, dport uint16) string {
	a, b := src, dst
	ap, bp := sport, dport
	if b.Less(a) || (a == b && bp < ap) {
		a, b, ap, bp = b, a, bp, ap
	}
	h := sha1.New()
	_ = binary.Write(h, binary.BigEndian, uint16(0))
	h.Write(a.AsSlice())
	h.Write(b.AsSlice())
	h.Write([]byte{6, 0})
	_ = binary.Write(h, binary.BigEndian, ap)
	_ = binary.Write(h, binary.BigEndian, bp)
	return "1:" + base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func TestECSWithCommunityIDProcessor(t *testing.T) {
	p, err := communityid.New(conf.NewConfig(), logp.NewNopLogger())
	require.NoError(t, err)
	b := NewBuilder(ECS, host)
	for _, tc := range []struct {
		dir                  model.Direction
		local, remote        string
		lport, rport         uint16
		wantSrc, wantDst     string
		wantSport, wantDport uint16
	}{
		{model.Outbound, "10.0.0.1", "10.0.0.9", 40000, 443, "10.0.0.1", "10.0.0.9", 40000, 443},
		{model.Inbound, "10.0.0.1", "10.0.0.9", 443, 40000, "10.0.0.9", "10.0.0.1", 40000, 443},
		{model.Outbound, "fd00::1", "fd00::9", 40000, 443, "fd00::1", "fd00::9", 40000, 443},
	} {
		ev := b.Build(report(model.Connection, tc.dir, tc.local, tc.lport, tc.remote, tc.rport, proc), ts)
		out, err := p.Run(&ev)
		require.NoError(t, err)
		want := communityID(netip.MustParseAddr(tc.wantSrc), netip.MustParseAddr(tc.wantDst), tc.wantSport, tc.wantDport)
		assert.Equal(t, want, mustGet(t, out.Fields, "network.community_id"), "%+v", tc)
	}
	// Both ends of one loopback connection, seen by connbeat as an outbound
	// and an inbound event, get the same flow id.
	outEv := b.Build(report(model.Connection, model.Outbound, "127.0.0.1", 40000, "127.0.0.1", 80, nil), ts)
	inEv := b.Build(report(model.Connection, model.Inbound, "127.0.0.1", 80, "127.0.0.1", 40000, nil), ts)
	o1, err := p.Run(&outEv)
	require.NoError(t, err)
	o2, err := p.Run(&inEv)
	require.NoError(t, err)
	assert.Equal(t, mustGet(t, o1.Fields, "network.community_id"), mustGet(t, o2.Fields, "network.community_id"))
}

// TestECSWithAddProcessMetadata runs libbeat's add_process_metadata on an
// ECS event for this test process, with the configuration README gives: it
// matches process.pid and adds the fields connbeat does not set itself.
func TestECSWithAddProcessMetadata(t *testing.T) {
	cfg, err := conf.NewConfigFrom(map[string]interface{}{
		"match_pids":     []string{"process.pid"},
		"include_fields": []string{"process.owner", "process.entity_id", "process.title"},
	})
	require.NoError(t, err)
	p, err := add_process_metadata.New(cfg, logp.NewNopLogger())
	require.NoError(t, err)

	self := *proc
	self.PID = int32(os.Getpid())
	ev := NewBuilder(ECS, host).Build(report(model.Connection, model.Outbound, "10.0.0.1", 40000, "10.0.0.9", 443, &self), ts)
	out, err := p.Run(&ev)
	require.NoError(t, err)
	assert.NotEmpty(t, mustGet(t, out.Fields, "process.entity_id"))
	assert.NotEmpty(t, mustGet(t, out.Fields, "process.title"))
	assert.Equal(t, strconv.Itoa(os.Getuid()), mustGet(t, out.Fields, "process.owner.id"))
	assert.Equal(t, "curl", mustGet(t, out.Fields, "process.name"), "connbeat's own fields are kept")
	assert.Equal(t, int32(os.Getpid()), mustGet(t, out.Fields, "process.pid"))
}

func BenchmarkBuild(b *testing.B) {
	for _, format := range []string{Classic, ECS} {
		b.Run(format, func(b *testing.B) {
			bl := NewBuilder(format, host)
			r := report(model.Connection, model.Outbound, "10.0.0.1", 40000, "10.0.0.9", 443, proc)
			b.ReportAllocs()
			var ev beat.Event
			for i := 0; i < b.N; i++ {
				ev = bl.Build(r, ts)
			}
			_ = ev
		})
	}
}

// TestSuspiciousAndTruncatedProcess: a process run from a deleted file or
// a memfd is flagged, and fields cut to their bound are named in
// connbeat.truncated_fields, in each format's own field names.
func TestSuspiciousAndTruncatedProcess(t *testing.T) {
	p := *proc
	p.Executable, p.Binary, p.ExecutableDeleted = "/memfd:payload", "memfd:payload", true
	p.ArgsTruncated, p.EnvironTruncated = true, true
	r := report(model.Connection, model.Outbound, "10.0.0.1", 40000, "93.184.216.34", 443, &p)

	ev := NewBuilder(Classic, host).Build(r, ts)
	assert.Equal(t, true, ev.Fields["local_process"].(mapstr.M)["exe_deleted"])
	assert.Equal(t, []string{"local_process.cmdline", "local_process.environ"}, ev.Fields["connbeat"].(mapstr.M)["truncated_fields"])

	ev = NewBuilder(ECS, host).Build(r, ts)
	assert.Equal(t, true, ev.Fields["process"].(mapstr.M)["executable_deleted"])
	assert.Equal(t, []string{"process.args", "process.command_line", "process.env_vars"}, ev.Fields["connbeat"].(mapstr.M)["truncated_fields"])

	// Neither flag nor list on an ordinary process.
	ev = NewBuilder(ECS, host).Build(report(model.Connection, model.Outbound, "10.0.0.1", 40000, "93.184.216.34", 443, proc), ts)
	assert.NotContains(t, ev.Fields["process"], "executable_deleted")
	assert.NotContains(t, ev.Fields["connbeat"], "truncated_fields")
}
