// Package event turns dedup reports and conntrack flows into libbeat
// events, in the classic shape (the original connbeat's; for flows, the
// conntrack event collector's) or with Elastic Common Schema fields.
package event

import (
	"strconv"
	"strings"
	"time"

	"github.com/connbeat/connbeat/model"
	"github.com/elastic/beats/v7/libbeat/beat"
	"github.com/elastic/elastic-agent-libs/mapstr"
)

// Host describes the agent's host for the classic `beat` object.
type Host struct {
	Hostname string
	Name     string   // the beat's name (libbeat's `name:` setting)
	LocalIPs []string // interface addresses, loopback excluded
}

// Format names.
const (
	Classic = "classic"
	ECS     = "ecs"
)

// Formats lists the values event_format accepts.
func Formats() []string { return []string{Classic, ECS} }

// Builder builds events in one format.
type Builder struct {
	ecs  bool
	host Host
}

// NewBuilder returns a builder for format (Classic or ECS).
func NewBuilder(format string, host Host) *Builder {
	return &Builder{ecs: format == ECS, host: host}
}

// SetLocalIPs replaces the host's addresses (they change with DHCP, VPNs).
func (b *Builder) SetLocalIPs(ips []string) { b.host.LocalIPs = ips }

// Build returns the event for one report.
func (b *Builder) Build(r *model.Report, ts time.Time) beat.Event {
	var fields mapstr.M
	if b.ecs {
		fields = b.ecsFields(r)
	} else {
		fields = b.classicFields(r)
	}
	cb := mapstr.M{
		"kind":      r.Kind.String(),
		"direction": r.Direction.String(),
		"sockets":   r.Sockets,
	}
	if r.Socket.Transport == model.TCP {
		// UDP has no states of its own: the kernel's CLOSE and ESTABLISHED
		// of a UDP socket say what kind and direction already say.
		cb["tcp_state"] = r.Socket.State.String()
	}
	if r.Owners > 1 {
		cb["owners"] = r.Owners
	}
	if r.Socket.NetNS != 0 {
		// ECS has no field for a network namespace; connbeat.* is where
		// both formats keep what is connbeat's own.
		cb["netns"] = r.Socket.NetNS
	}
	if info := r.Socket.Info; info != nil {
		cb["tcp_info"] = tcpInfo(info)
	}
	if p := r.Process; p != nil {
		if cut := b.truncatedFields(p); len(cut) > 0 {
			cb["truncated_fields"] = cut
		}
	}
	putContainer(fields, r.Process)
	if r.Peer != nil {
		if b.ecs {
			cb["peer"] = ecsPeer(r.Peer)
		} else {
			putClassicPeer(fields, r.Peer)
		}
	}
	fields["connbeat"] = cb
	return beat.Event{Timestamp: ts, Fields: fields}
}

func (b *Builder) classicFields(r *model.Report) mapstr.M {
	s := &r.Socket
	// Sized for what the event gets (a peer, connbeat).
	f := b.classicHead(r.Direction, s, 12)
	if r.Kind == model.Connection {
		f["remote_ip"] = s.RemoteIP.String()
		f["remote_port"] = s.RemotePort
	}
	if s.Transport != model.TCP {
		// Classic events were TCP's alone and stay as they were: only
		// other transports say theirs.
		f["transport"] = s.Transport.String()
	}
	if p := r.Process; p != nil {
		f["local_process"] = classicProcess(p)
	}
	return f
}

// classicHead starts a classic event of a socket's local end: type,
// direction, local address and the beat, in a map sized for size fields
// (a map that grows past eight entries is built twice).
func (b *Builder) classicHead(dir model.Direction, s *model.Socket, size int) mapstr.M {
	m := make(mapstr.M, size)
	m["type"] = "connbeat"
	m["direction"] = dir.String()
	m["local_ip"] = s.LocalIP.String()
	m["local_port"] = s.LocalPort
	m["beat"] = mapstr.M{
		"hostname":  b.host.Hostname,
		"name":      b.host.Name,
		"local_ips": b.host.LocalIPs,
	}
	return m
}

// classicProcess is the classic format's local_process object.
func classicProcess(p *model.Process) mapstr.M {
	lp := make(mapstr.M, 11) // every field below
	lp["pid"] = p.PID
	lp["ppid"] = p.PPID
	lp["name"] = p.Name
	lp["binary"] = p.Binary
	lp["start_time"] = p.StartTime.UTC()
	lp["uid"] = p.UID
	putNonEmpty(lp, "exe", p.Executable)
	putNonEmpty(lp, "user", p.User)
	if p.ExecutableDeleted {
		lp["exe_deleted"] = true
	}
	if len(p.Args) > 0 {
		lp["cmdline"] = strings.Join(p.Args, " ")
	}
	if len(p.Environ) > 0 {
		lp["environ"] = environ(p.Environ)
	}
	return lp
}

// truncatedFields names the fields of the event that were cut to their
// bound, in the event's format.
func (b *Builder) truncatedFields(p *model.Process) []string {
	var cut []string
	switch {
	case p.ArgsTruncated && b.ecs:
		cut = append(cut, "process.args", "process.command_line")
	case p.ArgsTruncated:
		cut = append(cut, "local_process.cmdline")
	}
	switch {
	case p.EnvironTruncated && b.ecs:
		cut = append(cut, "process.env_vars")
	case p.EnvironTruncated:
		cut = append(cut, "local_process.environ")
	}
	return cut
}

func (b *Builder) ecsFields(r *model.Report) mapstr.M {
	s := &r.Socket
	local := mapstr.M{"ip": s.LocalIP.String(), "port": s.LocalPort}
	netType := "ipv4"
	if s.LocalIP.Is6() {
		netType = "ipv6"
	}
	network := mapstr.M{"transport": s.Transport.String(), "type": netType, "iana_number": ianaNumber(s.Transport)}
	related := []string{s.LocalIP.String()}
	f := mapstr.M{"network": network}
	switch r.Direction {
	case model.Listening:
		network["direction"] = "listening"
		f["server"] = local
	default:
		remote := mapstr.M{"ip": s.RemoteIP.String(), "port": s.RemotePort}
		if s.RemoteIP != s.LocalIP {
			related = append(related, s.RemoteIP.String())
		}
		if r.Direction == model.Inbound {
			network["direction"] = "ingress"
			f["source"], f["client"] = remote, remote.Clone()
			f["destination"], f["server"] = local, local.Clone()
		} else {
			network["direction"] = "egress"
			f["source"], f["client"] = local, local.Clone()
			f["destination"], f["server"] = remote, remote.Clone()
		}
	}
	f["related"] = mapstr.M{"ip": related}
	if len(b.host.LocalIPs) > 0 {
		f["host"] = mapstr.M{"ip": b.host.LocalIPs}
	}
	if p := r.Process; p != nil {
		putECSProcess(f, p)
	}
	return f
}

// putECSProcess sets the ECS process and user objects.
func putECSProcess(f mapstr.M, p *model.Process) {
	proc := mapstr.M{
		"pid":    p.PID,
		"parent": mapstr.M{"pid": p.PPID},
		"name":   p.Binary,
		"start":  p.StartTime.UTC(),
	}
	putNonEmpty(proc, "executable", p.Executable)
	if p.ExecutableDeleted {
		proc["executable_deleted"] = true
	}
	if len(p.Args) > 0 {
		proc["args"] = p.Args
		proc["args_count"] = len(p.Args)
		proc["command_line"] = strings.Join(p.Args, " ")
	}
	if len(p.Environ) > 0 {
		proc["env_vars"] = environ(p.Environ)
	}
	f["process"] = proc
	user := mapstr.M{"id": strconv.FormatUint(uint64(p.UID), 10)}
	putNonEmpty(user, "name", p.User)
	f["user"] = user
}

// ianaNumber is ECS's network.iana_number of a transport.
func ianaNumber(t model.Transport) string {
	if t == model.UDP {
		return "17"
	}
	return "6"
}

func tcpInfo(i *model.TCPInfo) mapstr.M {
	return mapstr.M{
		"rtt_us":            i.RTTMicros,
		"rtt_var_us":        i.RTTVarMicros,
		"retransmits":       i.Retransmits,
		"total_retransmits": i.TotalRetransmits,
		"bytes_acked":       i.BytesAcked,
		"bytes_received":    i.BytesReceived,
		"segs_in":           i.SegsIn,
		"segs_out":          i.SegsOut,
	}
}

func environ(env map[string]string) mapstr.M {
	m := make(mapstr.M, len(env))
	for k, v := range env {
		m[k] = v
	}
	return m
}

func putNonEmpty(m mapstr.M, key, value string) {
	if value != "" {
		m[key] = value
	}
}
