package capture

import (
	"time"

	"github.com/connbeat/connbeat/model"
)

// A closed connection lingers in TIME_WAIT for 60 s on Linux, and no
// process holds it then; its owner is remembered a little longer than
// that, for at most closedOwnersMax connections.
const (
	closedOwnersTTL = 90 * time.Second
	closedOwnersMax = 1 << 16
)

// tuple is a connection's addresses, without pointers: the map of
// closed connections holds many, and the garbage collector skips them.
type tuple struct {
	local, remote         [16]byte
	localPort, remotePort uint16
	netns                 uint64
}

func tupleOf(s *model.Socket) tuple {
	return tuple{local: s.LocalIP.As16(), remote: s.RemoteIP.As16(), localPort: s.LocalPort, remotePort: s.RemotePort, netns: s.NetNS}
}

type closedOwner struct {
	owner Owner
	at    int64 // unix nanoseconds
}

// closedOwners is a bounded map from a closed connection's addresses to
// its owner, expiring entries after ttl; a full map drops its oldest half
// at once so that a flood of closes costs amortised constant time.
type closedOwners struct {
	max int
	ttl time.Duration
	m   map[tuple]closedOwner
}

func newClosedOwners(max int, ttl time.Duration) *closedOwners {
	return &closedOwners{max: max, ttl: ttl, m: map[tuple]closedOwner{}}
}

func (c *closedOwners) put(s model.Socket, o Owner, at time.Time) {
	if len(c.m) >= c.max {
		c.expire(at, c.ttl/2)
		if len(c.m) >= c.max {
			clear(c.m)
		}
	}
	c.m[tupleOf(&s)] = closedOwner{owner: o, at: at.UnixNano()}
}

// expire forgets entries older than age at now.
func (c *closedOwners) expire(now time.Time, age time.Duration) {
	for k, v := range c.m {
		if now.Sub(time.Unix(0, v.at)) > age {
			delete(c.m, k)
		}
	}
}

func (c *closedOwners) get(s *model.Socket) (Owner, bool) {
	v, ok := c.m[tupleOf(s)]
	return v.owner, ok
}
