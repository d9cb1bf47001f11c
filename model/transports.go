package model

import "strings"

// Transports is a set of transports: the ones a socket source lists
// (connbeat.protocols). The zero value is the empty set; sources that take
// one read the zero value as every transport, so that a caller who does
// not choose gets all of them.
type Transports uint8

// AllTransports holds every transport a socket source can list.
const AllTransports = Transports(1<<TCP | 1<<UDP)

// TransportsOf returns the set holding ts.
func TransportsOf(ts ...Transport) Transports {
	var s Transports
	for _, t := range ts {
		s |= 1 << t
	}
	return s
}

// Has reports whether t is in the set.
func (s Transports) Has(t Transport) bool { return t < 8 && s&(1<<t) != 0 }

// OrAll returns s, or every transport when s is empty.
func (s Transports) OrAll() Transports {
	if s == 0 {
		return AllTransports
	}
	return s
}

// String lists the set's transports, "tcp,udp".
func (s Transports) String() string {
	var names []string
	for t := TCP; t <= UDP; t++ {
		if s.Has(t) {
			names = append(names, t.String())
		}
	}
	return strings.Join(names, ",")
}

// HasState reports whether a socket of transport t can be in state st:
// any TCP state for TCP; for UDP StateClose (unconnected) or
// StateEstablished (connected), the only states the kernel gives a UDP
// socket.
func (t Transport) HasState(st State) bool {
	switch t {
	case TCP:
		return st.Valid()
	case UDP:
		return st == StateClose || st == StateEstablished
	}
	return false
}
