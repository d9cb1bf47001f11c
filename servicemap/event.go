// Package servicemap is `connbeat map`: it reads connbeat events (classic or
// ECS, from files, stdin or a Kafka topic) and draws which processes talk to
// which, grouped by host, as Graphviz DOT or a self-contained HTML page.
package servicemap

import (
	"cmp"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
)

// maxName caps the strings a report keeps (host, process, container
// names): a hostile line of a megabyte makes no megabyte node names.
const maxName = 128

// report is what the map needs of one event, whichever its format.
type report struct {
	host      string
	hostIPs   []netip.Addr
	dir       string // listening, inbound or outbound
	transport string // tcp unless the event says otherwise
	local     netip.AddrPort
	remote    netip.AddrPort
	process   string // "" when the event has no process fields
	container string
	sockets   int
	bytes     uint64 // 0 when the event carries no byte counts
	format    string // classic or ecs
}

// wire is both event shapes at once; a field the line lacks stays zero.
type wire struct {
	Connbeat *struct {
		Direction string `json:"direction"`
		Sockets   int    `json:"sockets"`
		TCPInfo   *struct {
			BytesAcked    uint64 `json:"bytes_acked"`
			BytesReceived uint64 `json:"bytes_received"`
		} `json:"tcp_info"`
	} `json:"connbeat"`
	Host *struct {
		Name     string   `json:"name"`
		Hostname string   `json:"hostname"`
		IP       []string `json:"ip"`
	} `json:"host"`
	// libbeat's add_docker_metadata and add_kubernetes_metadata
	// processors set container.*, in both formats.
	Container *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"container"`

	// classic
	LocalIP *string `json:"local_ip"`
	// Transport is set on classic events of UDP sockets only.
	Transport    string       `json:"transport"`
	LocalPort    int          `json:"local_port"`
	RemoteIP     string       `json:"remote_ip"`
	RemotePort   int          `json:"remote_port"`
	LocalProcess *wireProcess `json:"local_process"`
	Beat         *struct {
		Hostname string   `json:"hostname"`
		LocalIPs []string `json:"local_ips"`
	} `json:"beat"`

	// ecs
	Network *struct {
		Bytes     uint64 `json:"bytes"`
		Transport string `json:"transport"`
	} `json:"network"`
	Source      *wireEndpoint `json:"source"`
	Destination *wireEndpoint `json:"destination"`
	Server      *wireEndpoint `json:"server"`
	Process     *wireProcess  `json:"process"`
}

type wireProcess struct {
	Name   string `json:"name"`
	Binary string `json:"binary"` // classic: the executable's base name; name is comm
}

type wireEndpoint struct {
	IP   string `json:"ip"`
	Port int    `json:"port"`
}

// Why a line was skipped.
var (
	errNotJSON      = errors.New("not a JSON object")
	errNotConnbeat  = errors.New("not a connbeat event")
	errBadAddresses = errors.New("addresses missing or unreadable")
)

// parse reads one event. It never panics on hostile input; the error says
// which kind of skip it was.
func parse(line []byte) (report, error) {
	var w wire
	if err := json.Unmarshal(line, &w); err != nil {
		return report{}, errNotJSON
	}
	cb := w.Connbeat
	if cb == nil || (cb.Direction != "listening" && cb.Direction != "inbound" && cb.Direction != "outbound") {
		return report{}, errNotConnbeat
	}
	r := report{dir: cb.Direction, transport: "tcp", sockets: max(cb.Sockets, 1)}
	if i := cb.TCPInfo; i != nil {
		r.bytes = i.BytesAcked + i.BytesReceived
	}
	var ips []string
	if h := w.Host; h != nil {
		r.host = cmp.Or(h.Name, h.Hostname)
		ips = h.IP
	}
	if c := w.Container; c != nil {
		r.container = cmp.Or(c.Name, c.ID)
	}

	var ok bool
	if w.LocalIP != nil {
		r.format = "classic"
		r.transport = cmp.Or(clip(strings.ToLower(w.Transport)), r.transport)
		if b := w.Beat; b != nil {
			r.host = cmp.Or(r.host, b.Hostname)
			ips = b.LocalIPs
		}
		if p := w.LocalProcess; p != nil {
			r.process = cmp.Or(p.Binary, p.Name)
		}
		r.local, ok = addrPort(*w.LocalIP, w.LocalPort)
		if ok && r.dir != "listening" {
			r.remote, ok = addrPort(w.RemoteIP, w.RemotePort)
		}
	} else {
		r.format = "ecs"
		if n := w.Network; n != nil {
			r.bytes = max(r.bytes, n.Bytes)
			r.transport = cmp.Or(clip(strings.ToLower(n.Transport)), r.transport)
		}
		if p := w.Process; p != nil {
			r.process = p.Name
		}
		local, remote := w.Source, w.Destination
		switch r.dir {
		case "listening":
			local, remote = w.Server, nil
		case "inbound":
			local, remote = w.Destination, w.Source
		}
		r.local, ok = endpoint(local)
		if ok && remote != nil {
			r.remote, ok = endpoint(remote)
		} else if r.dir != "listening" {
			ok = false
		}
	}
	if !ok {
		return report{}, errBadAddresses
	}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && len(r.hostIPs) < 64 {
			r.hostIPs = append(r.hostIPs, a.Unmap())
		}
	}
	r.host, r.process, r.container = clip(r.host), clip(r.process), clip(r.container)
	return r, nil
}

func endpoint(e *wireEndpoint) (netip.AddrPort, bool) {
	if e == nil {
		return netip.AddrPort{}, false
	}
	return addrPort(e.IP, e.Port)
}

func addrPort(ip string, port int) (netip.AddrPort, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil || port < 0 || port > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), true
}

// clip cuts s to maxName bytes on a rune boundary and drops control
// characters, which have no place in a node's label.
func clip(s string) string {
	if len(s) > maxName {
		s = strings.ToValidUTF8(s[:maxName], "")
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
