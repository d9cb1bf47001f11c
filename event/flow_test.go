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

func tuple(proto uint8, src string, sport uint16, dst string, dport uint16) model.Tuple {
	return model.Tuple{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), SrcPort: sport, DstPort: dport, Proto: proto}
}

// dnatDestroy is the DESTROY of a TCP connection from this host to
// 192.0.2.2:8080 that a DNAT rule sent to a container at 172.17.0.2:80.
func dnatDestroy() *model.Flow {
	return &model.Flow{
		Event: model.FlowDestroy, ID: 3735928559,
		Original:        tuple(6, "192.0.2.2", 40000, "192.0.2.2", 8080),
		Reply:           tuple(6, "172.17.0.2", 80, "192.0.2.2", 40000),
		OriginalCounter: model.FlowCounter{Packets: 6, Bytes: 1368},
		ReplyCounter:    model.FlowCounter{Packets: 4, Bytes: 524},
		Start:           start, Stop: start.Add(1500 * time.Millisecond),
		SeenReply: true, Assured: true, TCPState: "time_wait",
		Direction: model.Outbound, Process: proc,
	}
}

// classicDir is one direction of a classic conntrack event, with the
// types the builder gives each field.
func classicDir(l3 int, l3name, src, dst string, l4 uint8, l4name string, sport, dport uint16, packets, bytes uint64) mapstr.M {
	return mapstr.M{
		"Layer3":  mapstr.M{"Protonum": l3, "Protoname": l3name, "Src": src, "Dst": dst},
		"Layer4":  mapstr.M{"Protonum": l4, "Protoname": l4name, "Sport": sport, "Dport": dport},
		"Counter": mapstr.M{"Packets": packets, "Bytes": bytes},
	}
}

// TestClassicFlow is the conntrack event collector's JSON, field for
// field, with connbeat's kind, direction and the local process added.
func TestClassicFlow(t *testing.T) {
	ev := NewBuilder(Classic, host).BuildFlow(dnatDestroy(), ts)
	assert.Equal(t, ts, ev.Timestamp)
	assert.Equal(t, mapstr.M{
		"Timestamp": ts.Unix(),
		"Type":      "DESTROY",
		"Id":        uint32(3735928559),
		"Original":  classicDir(2, "ipv4", "192.0.2.2", "192.0.2.2", 6, "tcp", 40000, 8080, 6, 1368),
		"Reply":     classicDir(2, "ipv4", "172.17.0.2", "192.0.2.2", 6, "tcp", 80, 40000, 4, 524),
		"UNREPLIED": false,
		"ASSURED":   true,
		"local_process": mapstr.M{
			"pid": int32(4242), "ppid": int32(1), "name": "curl", "binary": "curl", "exe": "/usr/bin/curl",
			"cmdline": "curl https://example.com", "start_time": start, "uid": uint32(1000), "user": "alice",
			"environ": mapstr.M{"SERVICE_NAME": "probe"},
		},
		"connbeat": mapstr.M{
			"kind": "conntrack", "direction": "outbound",
			"conntrack": mapstr.M{"tcp_state": "time_wait", "start": start, "end": start.Add(1500 * time.Millisecond)},
		},
	}, ev.Fields)
}

// TestClassicFlowNew: a NEW of a forwarded IPv6 UDP flow, unreplied, no
// counters yet, no process; a re-synced one says so.
func TestClassicFlowNew(t *testing.T) {
	f := &model.Flow{
		Event: model.FlowNew, ID: 7,
		Original:  tuple(17, "2001:db8::1", 5353, "2001:db8::2", 53),
		Reply:     tuple(17, "2001:db8::2", 53, "2001:db8::1", 5353),
		Direction: model.Forwarded, Resync: true, Zone: 3,
	}
	ev := NewBuilder(Classic, host).BuildFlow(f, ts)
	assert.Equal(t, mapstr.M{
		"Timestamp": ts.Unix(),
		"Type":      "NEW",
		"Id":        uint32(7),
		"Original":  classicDir(10, "ipv6", "2001:db8::1", "2001:db8::2", 17, "udp", 5353, 53, 0, 0),
		"Reply":     classicDir(10, "ipv6", "2001:db8::2", "2001:db8::1", 17, "udp", 53, 5353, 0, 0),
		"UNREPLIED": true,
		"ASSURED":   false,
		"connbeat":  mapstr.M{"kind": "conntrack", "direction": "forwarded", "conntrack": mapstr.M{"resync": true, "zone": uint16(3)}},
	}, ev.Fields)
}

// TestECSFlowDNAT: source and destination from the original tuple,
// destination.nat where DNAT sent the flow, per-direction counters,
// start, end and duration.
func TestECSFlowDNAT(t *testing.T) {
	ev := NewBuilder(ECS, host).BuildFlow(dnatDestroy(), ts)
	f := ev.Fields
	delete(f, "process")
	delete(f, "user")
	assert.Equal(t, mapstr.M{
		"event": mapstr.M{
			"kind": "event", "category": []string{"network"}, "type": []string{"connection", "end"}, "action": "destroy",
			"start": start, "end": start.Add(1500 * time.Millisecond), "duration": int64(1500 * time.Millisecond),
		},
		"source":      mapstr.M{"ip": "192.0.2.2", "port": uint16(40000), "bytes": uint64(1368), "packets": uint64(6)},
		"destination": mapstr.M{"ip": "192.0.2.2", "port": uint16(8080), "bytes": uint64(524), "packets": uint64(4), "nat": mapstr.M{"ip": "172.17.0.2", "port": uint16(80)}},
		"network":     mapstr.M{"transport": "tcp", "type": "ipv4", "iana_number": "6", "direction": "egress", "bytes": uint64(1892), "packets": uint64(10)},
		"related":     mapstr.M{"ip": []string{"192.0.2.2", "172.17.0.2"}},
		"connbeat": mapstr.M{
			"kind": "conntrack", "direction": "outbound",
			"conntrack": mapstr.M{"tcp_state": "time_wait", "start": start, "end": start.Add(1500 * time.Millisecond)},
		},
	}, f)
}

// TestECSFlowSNAT: a forwarded flow masqueraded on its way out gets
// source.nat; a NEW has no counters or times.
func TestECSFlowSNAT(t *testing.T) {
	f := &model.Flow{
		Event:     model.FlowNew,
		Original:  tuple(6, "172.17.0.2", 33000, "93.184.216.34", 443),
		Reply:     tuple(6, "93.184.216.34", 443, "192.0.2.2", 61000),
		Direction: model.Forwarded,
	}
	ev := NewBuilder(ECS, host).BuildFlow(f, ts)
	assert.Equal(t, mapstr.M{
		"event":       mapstr.M{"kind": "event", "category": []string{"network"}, "type": []string{"connection", "start"}, "action": "new"},
		"source":      mapstr.M{"ip": "172.17.0.2", "port": uint16(33000), "nat": mapstr.M{"ip": "192.0.2.2", "port": uint16(61000)}},
		"destination": mapstr.M{"ip": "93.184.216.34", "port": uint16(443)},
		"network":     mapstr.M{"transport": "tcp", "type": "ipv4", "iana_number": "6"},
		"related":     mapstr.M{"ip": []string{"172.17.0.2", "93.184.216.34", "192.0.2.2"}},
		"connbeat":    mapstr.M{"kind": "conntrack", "direction": "forwarded"},
	}, ev.Fields)
}

// TestECSFlowCommunityID runs libbeat's community_id processor on flow
// events: the id of the original tuple for TCP, and one for ICMP echo
// (from icmp.type and icmp.code).
func TestECSFlowCommunityID(t *testing.T) {
	p, err := communityid.New(conf.NewConfig(), logp.NewNopLogger())
	require.NoError(t, err)
	b := NewBuilder(ECS, host)
	ev := b.BuildFlow(dnatDestroy(), ts)
	out, err := p.Run(&ev)
	require.NoError(t, err)
	assert.Equal(t, communityID(netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.2"), 40000, 8080),
		mustGet(t, out.Fields, "network.community_id"))

	ping := &model.Flow{
		Event:    model.FlowNew,
		Original: model.Tuple{Src: netip.MustParseAddr("192.0.2.2"), Dst: netip.MustParseAddr("192.0.2.9"), Proto: 1, ICMPType: 8, ICMPID: 77},
		Reply:    model.Tuple{Src: netip.MustParseAddr("192.0.2.9"), Dst: netip.MustParseAddr("192.0.2.2"), Proto: 1, ICMPID: 77},
	}
	ev = b.BuildFlow(ping, ts)
	assert.Equal(t, mapstr.M{"type": uint8(8), "code": uint8(0)}, mustGet(t, ev.Fields, "icmp"))
	assert.Nil(t, mustGetOr(ev.Fields, "source.port"), "no ports for ICMP")
	assert.Nil(t, mustGetOr(ev.Fields, "destination.nat"), "the reply of an echo is no translation")
	out, err = p.Run(&ev)
	require.NoError(t, err)
	assert.NotEmpty(t, mustGet(t, out.Fields, "network.community_id"))
}

func mustGetOr(m mapstr.M, key string) interface{} {
	v, _ := m.GetValue(key)
	return v
}

func BenchmarkBuildFlow(b *testing.B) {
	for _, format := range Formats() {
		b.Run(format, func(b *testing.B) {
			bl := NewBuilder(format, host)
			f := dnatDestroy()
			b.ReportAllocs()
			for b.Loop() {
				_ = bl.BuildFlow(f, ts)
			}
		})
	}
}
