package event

import (
	"strconv"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/elastic-agent-libs/mapstr"

	"github.com/connbeat/connbeat/model"
)

// FlowKind is connbeat.kind of a flow event. It is not a model.Kind:
// flows do not travel through classify and dedup.
const FlowKind = "flow"

// ConnFlow returns the flow event of one ended connection (connbeat.kind
// flow), published at now. The classic format keeps the classic
// connection event's fields (local_*, remote_*, local_process, beat) and
// puts the flow's figures under connbeat.flow; the ECS format says them
// with ECS's own fields (event.*, source/destination bytes and packets,
// source being the initiator) and keeps under connbeat.flow only what ECS
// has no field for. connbeat.kind and connbeat.direction are in both, as
// in every other event.
func (b *Builder) ConnFlow(f *model.ConnFlow, now time.Time) beat.Event {
	// Sized for every field it gets (the classic format adds the times
	// and counters): a map that grows past eight entries is built twice.
	size := 3
	if !b.ecs {
		size = 11
	}
	flow := make(mapstr.M, size)
	flow["ended"] = f.Ended.String()
	if f.Socket.Transport == model.TCP {
		// Retransmits and RTT are TCP's; a UDP flow has neither.
		flow["retransmits"] = f.Retransmits
		if f.SRTTMicros > 0 {
			flow["rtt_us"] = f.SRTTMicros
		}
	}
	cb := mapstr.M{
		"kind":      FlowKind,
		"direction": f.Direction.String(),
		"flow":      flow,
	}
	var fields mapstr.M
	if b.ecs {
		fields = b.ecsConnFlow(f)
	} else {
		fields = b.classicConnFlow(f, flow)
		cb["transport"] = f.Socket.Transport.String()
	}
	fields["connbeat"] = cb
	return beat.Event{Timestamp: now, Fields: fields}
}

// classicConnFlow is a classic connection event with the flow's times
// and counters, seen from the local end, added to flow.
func (b *Builder) classicConnFlow(f *model.ConnFlow, flow mapstr.M) mapstr.M {
	s := &f.Socket
	m := b.classicHead(f.Direction, s, 10) // and the remote end, the process, connbeat
	m["remote_ip"] = s.RemoteIP.String()
	m["remote_port"] = s.RemotePort
	if f.Process != nil {
		m["local_process"] = classicProcess(f.Process)
	}
	if !f.Start.IsZero() {
		flow["start"] = f.Start.UTC()
	}
	flow["end"] = f.End.UTC()
	if d, ok := duration(f); ok {
		flow["duration"] = d
	}
	flow["bytes_sent"], flow["bytes_received"] = f.BytesSent, f.BytesReceived
	flow["segs_sent"], flow["segs_received"] = f.SegsSent, f.SegsReceived
	return m
}

// ecsConnFlow maps a flow to ECS. source is the end that opened the
// connection: the local end of an outbound flow, the peer of an inbound
// one, so source.bytes is what the initiator sent.
func (b *Builder) ecsConnFlow(f *model.ConnFlow) mapstr.M {
	s := &f.Socket
	local := mapstr.M{"ip": s.LocalIP.String(), "port": s.LocalPort}
	remote := mapstr.M{"ip": s.RemoteIP.String(), "port": s.RemotePort}
	netType := "ipv4"
	if s.LocalIP.Is6() {
		netType = "ipv6"
	}
	iana := 6
	if s.Transport == model.UDP {
		iana = 17
	}
	network := mapstr.M{
		"transport":   s.Transport.String(),
		"type":        netType,
		"iana_number": strconv.Itoa(iana),
		"bytes":       f.BytesSent + f.BytesReceived,
		"packets":     f.SegsSent + f.SegsReceived,
	}
	local["bytes"], local["packets"] = f.BytesSent, f.SegsSent
	remote["bytes"], remote["packets"] = f.BytesReceived, f.SegsReceived
	m := make(mapstr.M, 12) // network to user, and connbeat
	m["network"] = network
	if f.Direction == model.Inbound {
		network["direction"] = "ingress"
		m["source"], m["destination"] = remote, local
		m["client"], m["server"] = endpoint(remote), endpoint(local)
	} else {
		network["direction"] = "egress"
		m["source"], m["destination"] = local, remote
		m["client"], m["server"] = endpoint(local), endpoint(remote)
	}
	related := []string{s.LocalIP.String()}
	if s.RemoteIP != s.LocalIP {
		related = append(related, s.RemoteIP.String())
	}
	m["related"] = mapstr.M{"ip": related}

	outcome := "success"
	if f.Ended == model.EndRefused || f.Ended == model.EndFailed {
		outcome = "failure"
	}
	ev := mapstr.M{
		"kind":     "event",
		"category": []string{"network"},
		"type":     []string{"connection", "end"},
		"action":   "connection-ended",
		"outcome":  outcome,
		"end":      f.End.UTC(),
	}
	if !f.Start.IsZero() {
		ev["start"] = f.Start.UTC()
	}
	if d, ok := duration(f); ok {
		ev["duration"] = d
	}
	m["event"] = ev
	if len(b.host.LocalIPs) > 0 {
		m["host"] = mapstr.M{"ip": b.host.LocalIPs}
	}
	if f.Process != nil {
		putECSProcess(m, f.Process)
	}
	return m
}

// endpoint is an ECS client or server object: the address and port of
// a source or destination, without its counters.
func endpoint(end mapstr.M) mapstr.M {
	return mapstr.M{"ip": end["ip"], "port": end["port"]}
}

// duration is the flow's life in nanoseconds, when the capture saw its
// start and the clocks agree (an end before the start is not a
// duration).
func duration(f *model.ConnFlow) (int64, bool) {
	if f.Start.IsZero() || f.End.Before(f.Start) {
		return 0, false
	}
	return f.End.Sub(f.Start).Nanoseconds(), true
}
