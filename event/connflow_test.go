package event

import (
	"net/netip"
	"testing"
	"time"

	"github.com/elastic/beats/v7/libbeat/processors/communityid"
	conf "github.com/elastic/elastic-agent-libs/config"
	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/mapstr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/connbeat/connbeat/model"
)

// connFlow is a flow of transport between local and remote, 250 ms long,
// that sent 1200 bytes in 5 segments and received 300 in 3 and ended
// with a FIN.
func connFlow(dir model.Direction, transport model.Transport, local string, lport uint16, remote string, rport uint16) *model.ConnFlow {
	return &model.ConnFlow{
		Socket: model.Socket{
			LocalIP: netip.MustParseAddr(local), LocalPort: lport,
			RemoteIP: netip.MustParseAddr(remote), RemotePort: rport,
			Transport: transport,
		},
		Direction: dir, Process: proc,
		Start: start, End: start.Add(250 * time.Millisecond),
		BytesSent: 1200, SegsSent: 5, BytesReceived: 300, SegsReceived: 3,
		Retransmits: 1, SRTTMicros: 840, Ended: model.EndFIN,
	}
}

var classicProc = mapstr.M{
	"pid": int32(4242), "ppid": int32(1), "name": "curl", "binary": "curl", "exe": "/usr/bin/curl",
	"cmdline": "curl https://example.com", "start_time": start, "uid": uint32(1000), "user": "alice",
	"environ": mapstr.M{"SERVICE_NAME": "probe"},
}

// TestClassicConnFlowOutbound: the classic connection event's fields, the
// flow's figures from the local end under connbeat.flow.
func TestClassicConnFlowOutbound(t *testing.T) {
	ev := NewBuilder(Classic, host).ConnFlow(connFlow(model.Outbound, model.TCP, "10.0.0.1", 40000, "93.184.216.34", 443), ts)
	assert.Equal(t, ts, ev.Timestamp)
	assert.Equal(t, mapstr.M{
		"type":          "connbeat",
		"direction":     "outbound",
		"local_ip":      "10.0.0.1",
		"local_port":    uint16(40000),
		"remote_ip":     "93.184.216.34",
		"remote_port":   uint16(443),
		"beat":          mapstr.M{"hostname": "web-1", "name": "web-1", "local_ips": []string{"10.0.0.1", "fd00::1"}},
		"local_process": classicProc,
		"connbeat": mapstr.M{
			"kind": "flow", "direction": "outbound", "transport": "tcp",
			"flow": mapstr.M{
				"start": start, "end": start.Add(250 * time.Millisecond), "duration": int64(250 * time.Millisecond),
				"bytes_sent": uint64(1200), "bytes_received": uint64(300),
				"segs_sent": uint64(5), "segs_received": uint64(3),
				"retransmits": uint32(1), "rtt_us": uint32(840), "ended": "fin",
			},
		},
	}, ev.Fields)
}

// TestECSConnFlowOutbound: the local end opened it, so it is source, and
// source.bytes is what it sent.
func TestECSConnFlowOutbound(t *testing.T) {
	ev := NewBuilder(ECS, host).ConnFlow(connFlow(model.Outbound, model.TCP, "10.0.0.1", 40000, "93.184.216.34", 443), ts)
	f := ev.Fields
	assert.Equal(t, mapstr.M{"pid": int32(4242), "parent": mapstr.M{"pid": int32(1)}, "name": "curl", "executable": "/usr/bin/curl",
		"args": []string{"curl", "https://example.com"}, "args_count": 2, "command_line": "curl https://example.com",
		"start": start, "env_vars": mapstr.M{"SERVICE_NAME": "probe"}}, f["process"])
	assert.Equal(t, mapstr.M{"id": "1000", "name": "alice"}, f["user"])
	delete(f, "process")
	delete(f, "user")
	assert.Equal(t, mapstr.M{
		"event": mapstr.M{
			"kind": "event", "category": []string{"network"}, "type": []string{"connection", "end"},
			"action": "connection-ended", "outcome": "success",
			"start": start, "end": start.Add(250 * time.Millisecond), "duration": int64(250 * time.Millisecond),
		},
		"source":      mapstr.M{"ip": "10.0.0.1", "port": uint16(40000), "bytes": uint64(1200), "packets": uint64(5)},
		"destination": mapstr.M{"ip": "93.184.216.34", "port": uint16(443), "bytes": uint64(300), "packets": uint64(3)},
		"client":      mapstr.M{"ip": "10.0.0.1", "port": uint16(40000)},
		"server":      mapstr.M{"ip": "93.184.216.34", "port": uint16(443)},
		"network": mapstr.M{"transport": "tcp", "type": "ipv4", "iana_number": "6", "direction": "egress",
			"bytes": uint64(1500), "packets": uint64(8)},
		"related": mapstr.M{"ip": []string{"10.0.0.1", "93.184.216.34"}},
		"host":    mapstr.M{"ip": []string{"10.0.0.1", "fd00::1"}},
		"connbeat": mapstr.M{"kind": "flow", "direction": "outbound",
			"flow": mapstr.M{"retransmits": uint32(1), "rtt_us": uint32(840), "ended": "fin"}},
	}, f)
}

// TestECSConnFlowInbound: the peer opened it, so the peer is source and
// client, and what the local end sent is destination.bytes.
func TestECSConnFlowInbound(t *testing.T) {
	f := connFlow(model.Inbound, model.TCP, "fd00::1", 8080, "fd00::9", 51000)
	f.Ended = model.EndRST
	ev := NewBuilder(ECS, host).ConnFlow(f, ts)
	for key, want := range map[string]any{
		"source":            mapstr.M{"ip": "fd00::9", "port": uint16(51000), "bytes": uint64(300), "packets": uint64(3)},
		"destination":       mapstr.M{"ip": "fd00::1", "port": uint16(8080), "bytes": uint64(1200), "packets": uint64(5)},
		"client":            mapstr.M{"ip": "fd00::9", "port": uint16(51000)},
		"server":            mapstr.M{"ip": "fd00::1", "port": uint16(8080)},
		"network.direction": "ingress",
		"network.type":      "ipv6",
		"event.outcome":     "success",
		"connbeat":          mapstr.M{"kind": "flow", "direction": "inbound", "flow": mapstr.M{"retransmits": uint32(1), "rtt_us": uint32(840), "ended": "rst"}},
	} {
		assert.Equal(t, want, mustGet(t, ev.Fields, key), key)
	}
}

// TestConnFlowUDPTimeout: a UDP pair that went idle has no retransmits or
// RTT, and its datagrams are its packets; an IANA number of 17.
func TestConnFlowUDPTimeout(t *testing.T) {
	f := connFlow(model.Outbound, model.UDP, "10.0.0.1", 53000, "10.0.0.53", 53)
	f.Ended, f.Retransmits, f.SRTTMicros = model.EndTimeout, 0, 0
	ecs := NewBuilder(ECS, host).ConnFlow(f, ts).Fields
	assert.Equal(t, mapstr.M{"transport": "udp", "type": "ipv4", "iana_number": "17", "direction": "egress",
		"bytes": uint64(1500), "packets": uint64(8)}, ecs["network"])
	assert.Equal(t, mapstr.M{"ended": "timeout"}, mustGet(t, ecs, "connbeat.flow"))

	classic := NewBuilder(Classic, host).ConnFlow(f, ts).Fields
	assert.Equal(t, "udp", mustGet(t, classic, "connbeat.transport"))
	flow := mustGet(t, classic, "connbeat.flow").(mapstr.M)
	assert.Equal(t, "timeout", flow["ended"])
	assert.NotContains(t, flow, "retransmits")
	assert.NotContains(t, flow, "rtt_us")
}

// TestConnFlowRefused: a refused connect is a failure, with no payload,
// no RTT sample and no process when the capture could not tell it; a
// flow whose start the capture did not see has no start or duration.
func TestConnFlowRefused(t *testing.T) {
	f := &model.ConnFlow{
		Socket: model.Socket{
			LocalIP: netip.MustParseAddr("127.0.0.1"), LocalPort: 41000,
			RemoteIP: netip.MustParseAddr("127.0.0.1"), RemotePort: 9,
		},
		Direction: model.Outbound,
		End:       start, SegsSent: 1, SegsReceived: 1, Ended: model.EndRefused,
	}
	ecs := NewBuilder(ECS, Host{}).ConnFlow(f, ts).Fields
	assert.Equal(t, mapstr.M{
		"kind": "event", "category": []string{"network"}, "type": []string{"connection", "end"},
		"action": "connection-ended", "outcome": "failure", "end": start,
	}, ecs["event"])
	assert.Equal(t, mapstr.M{"ip": []string{"127.0.0.1"}}, ecs["related"], "one address named once")
	assert.NotContains(t, ecs, "process")
	assert.NotContains(t, ecs, "host")
	assert.Equal(t, mapstr.M{"retransmits": uint32(0), "ended": "refused"}, mustGet(t, ecs, "connbeat.flow"))

	classic := NewBuilder(Classic, Host{}).ConnFlow(f, ts).Fields
	assert.NotContains(t, classic, "local_process")
	assert.Equal(t, mapstr.M{
		"end": start, "bytes_sent": uint64(0), "bytes_received": uint64(0),
		"segs_sent": uint64(1), "segs_received": uint64(1), "retransmits": uint32(0), "ended": "refused",
	}, mustGet(t, classic, "connbeat.flow"))

	// Clocks that disagree give no negative duration.
	f.Start = start.Add(time.Second)
	assert.Nil(t, mustGetOr(NewBuilder(ECS, Host{}).ConnFlow(f, ts).Fields, "event.duration"))
	assert.Equal(t, "failed", model.EndFailed.String())
}

// TestECSConnFlowCommunityID: libbeat's community_id processor hashes a
// flow event's tuple as it would the connection's own packets: an
// inbound flow's id is the same as the outbound flow of its peer.
func TestECSConnFlowCommunityID(t *testing.T) {
	p, err := communityid.New(conf.NewConfig(), logp.NewNopLogger())
	require.NoError(t, err)
	b := NewBuilder(ECS, host)
	out := b.ConnFlow(connFlow(model.Outbound, model.TCP, "10.0.0.1", 40000, "10.0.0.2", 8080), ts)
	in := b.ConnFlow(connFlow(model.Inbound, model.TCP, "10.0.0.2", 8080, "10.0.0.1", 40000), ts)
	o, err := p.Run(&out)
	require.NoError(t, err)
	i, err := p.Run(&in)
	require.NoError(t, err)
	want := communityID(netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), 40000, 8080)
	assert.Equal(t, want, mustGet(t, o.Fields, "network.community_id"))
	assert.Equal(t, want, mustGet(t, i.Fields, "network.community_id"))
}

func BenchmarkConnFlow(b *testing.B) {
	for _, format := range Formats() {
		b.Run(format, func(b *testing.B) {
			bl := NewBuilder(format, host)
			f := connFlow(model.Outbound, model.TCP, "10.0.0.1", 40000, "93.184.216.34", 443)
			b.ReportAllocs()
			for b.Loop() {
				_ = bl.ConnFlow(f, ts)
			}
		})
	}
}
