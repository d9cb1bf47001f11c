package event

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/elastic-agent-libs/mapstr"

	"github.com/connbeat/connbeat/model"
)

// BuildFlow returns the event for one conntrack flow, received at ts.
// Both formats carry connbeat.kind (conntrack), connbeat.direction and
// connbeat.conntrack.
func (b *Builder) BuildFlow(f *model.Flow, ts time.Time) beat.Event {
	var fields mapstr.M
	if b.ecs {
		fields = ecsFlow(f)
	} else {
		fields = classicFlow(f, ts)
	}
	ct := mapstr.M{}
	putNonEmpty(ct, "tcp_state", f.TCPState)
	if !f.Start.IsZero() {
		ct["start"] = f.Start.UTC()
	}
	if !f.Stop.IsZero() {
		ct["end"] = f.Stop.UTC()
	}
	if f.Zone != 0 {
		ct["zone"] = f.Zone
	}
	if f.Mark != 0 {
		ct["mark"] = f.Mark
	}
	if f.Resync {
		ct["resync"] = true
	}
	cb := mapstr.M{"kind": model.Conntrack.String(), "direction": f.Direction.String()}
	if len(ct) > 0 {
		cb["conntrack"] = ct
	}
	fields["connbeat"] = cb
	return beat.Event{Timestamp: ts, Fields: fields}
}

// classicFlow is the JSON of the conntrack event collector connbeat
// replaces, field for field, so its consumers keep working. Its Timestamp
// (receive time, Unix seconds), Id and Layer4.Protonum, always 0 there
// because of parsing bugs, carry their values here.
func classicFlow(f *model.Flow, ts time.Time) mapstr.M {
	m := mapstr.M{
		"Timestamp": ts.Unix(),
		"Type":      f.Event.String(),
		"Id":        f.ID,
		"Original":  classicMeta(&f.Original, f.OriginalCounter),
		"Reply":     classicMeta(&f.Reply, f.ReplyCounter),
		"UNREPLIED": !f.SeenReply,
		"ASSURED":   f.Assured,
	}
	if f.Process != nil {
		m["local_process"] = classicProcess(f.Process)
		putContainer(m, f.Process)
	}
	return m
}

func classicMeta(t *model.Tuple, c model.FlowCounter) mapstr.M {
	l3num, l3name := 2, "ipv4" // AF_INET, as conntrack prints it
	if t.Src.Is6() {
		l3num, l3name = 10, "ipv6"
	}
	return mapstr.M{
		"Layer3":  mapstr.M{"Protonum": l3num, "Protoname": l3name, "Src": t.Src.String(), "Dst": t.Dst.String()},
		"Layer4":  mapstr.M{"Protonum": t.Proto, "Protoname": model.ProtoName(t.Proto), "Sport": t.SrcPort, "Dport": t.DstPort},
		"Counter": mapstr.M{"Packets": c.Packets, "Bytes": c.Bytes},
	}
}

// ecsFlow maps a flow to ECS: source and destination are the original
// tuple's; where the reply tuple shows a translation, source.nat (SNAT:
// the address the source was rewritten to) and destination.nat (DNAT: the
// address the flow really went to).
func ecsFlow(f *model.Flow) mapstr.M {
	o, r := &f.Original, &f.Reply
	source := mapstr.M{"ip": o.Src.String()}
	destination := mapstr.M{"ip": o.Dst.String()}
	hasPorts := withPorts(o.Proto)
	if hasPorts {
		source["port"], destination["port"] = o.SrcPort, o.DstPort
	}
	related := []string{o.Src.String()}
	addRelated := func(ip string) {
		if !slices.Contains(related, ip) {
			related = append(related, ip)
		}
	}
	addRelated(o.Dst.String())
	// An end is translated when the reply tuple names it otherwise: the
	// reply goes to the source's translated address and comes from the
	// destination's.
	translate := func(end mapstr.M, orig, seen netip.Addr, origPort, seenPort uint16) {
		if seen == orig && (!hasPorts || seenPort == origPort) {
			return
		}
		nat := mapstr.M{"ip": seen.String()}
		if hasPorts {
			nat["port"] = seenPort
		}
		end["nat"] = nat
		addRelated(seen.String())
	}
	translate(source, o.Src, r.Dst, o.SrcPort, r.DstPort)
	translate(destination, o.Dst, r.Src, o.DstPort, r.SrcPort)

	netType := "ipv4"
	if o.Src.Is6() {
		netType = "ipv6"
	}
	transport := model.ProtoName(o.Proto)
	if o.Proto == 58 {
		transport = "ipv6-icmp" // ECS uses IANA's keyword
	}
	network := mapstr.M{"transport": transport, "type": netType, "iana_number": strconv.Itoa(int(o.Proto))}
	switch f.Direction {
	case model.Outbound:
		network["direction"] = "egress"
	case model.Inbound:
		network["direction"] = "ingress"
	}
	oc, rc := f.OriginalCounter, f.ReplyCounter
	if oc != (model.FlowCounter{}) || rc != (model.FlowCounter{}) {
		source["bytes"], source["packets"] = oc.Bytes, oc.Packets
		destination["bytes"], destination["packets"] = rc.Bytes, rc.Packets
		network["bytes"], network["packets"] = oc.Bytes+rc.Bytes, oc.Packets+rc.Packets
	}

	ev := mapstr.M{
		"kind":     "event",
		"category": []string{"network"},
		"action":   strings.ToLower(f.Event.String()),
		"type":     []string{"connection", map[model.FlowEvent]string{model.FlowNew: "start", model.FlowUpdate: "change", model.FlowDestroy: "end"}[f.Event]},
	}
	if !f.Start.IsZero() {
		ev["start"] = f.Start.UTC()
	}
	if !f.Stop.IsZero() {
		ev["end"] = f.Stop.UTC()
		if !f.Start.IsZero() {
			ev["duration"] = f.Stop.Sub(f.Start).Nanoseconds()
		}
	}
	m := mapstr.M{
		"event":       ev,
		"source":      source,
		"destination": destination,
		"network":     network,
		"related":     mapstr.M{"ip": related},
	}
	if o.Proto == 1 || o.Proto == 58 {
		// What libbeat's community_id processor reads for ICMP.
		m["icmp"] = mapstr.M{"type": o.ICMPType, "code": o.ICMPCode}
	}
	if f.Process != nil {
		putECSProcess(m, f.Process)
		putContainer(m, f.Process)
	}
	return m
}

// withPorts reports whether the protocol's tuples have ports: tcp, udp,
// dccp, sctp, udplite.
func withPorts(proto uint8) bool {
	switch proto {
	case 6, 17, 33, 132, 136:
		return true
	}
	return false
}
