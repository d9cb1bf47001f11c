package model

// Kind says what a record describes.
type Kind uint8

// Record kinds.
const (
	Listener Kind = iota + 1
	Connection
	// Conntrack is a flow reported by the conntrack input.
	Conntrack
)

func (k Kind) String() string {
	switch k {
	case Listener:
		return "listener"
	case Connection:
		return "connection"
	case Conntrack:
		return "conntrack"
	}
	return "unknown"
}

// Direction of a record, seen from this host.
type Direction uint8

// Directions.
const (
	Listening Direction = iota + 1
	Inbound
	Outbound
	// Forwarded is a conntrack flow neither of whose ends is local: the
	// host routes or translates it.
	Forwarded
)

func (d Direction) String() string {
	switch d {
	case Listening:
		return "listening"
	case Inbound:
		return "inbound"
	case Outbound:
		return "outbound"
	case Forwarded:
		return "forwarded"
	}
	return "unknown"
}

// Record is one classified socket with its owner, if one could be read.
type Record struct {
	Kind      Kind
	Direction Direction
	Socket    Socket
	Process   *Process // nil when the owner is unknown or unreadable
	// Owners is how many processes hold the socket (forked workers share
	// listeners); Process is the topmost of them.
	Owners int
	// Peer is the process at the other end when that end is a socket on
	// this host too (loopback, or a veth between two namespaces); nil
	// otherwise or when it could not be read.
	Peer *Process
}

// Report is a record to send and the number of sockets it stands for.
type Report struct {
	Record
	Sockets int
}
