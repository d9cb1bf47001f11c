package netns

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Counters are a network namespace's own socket counters, from its
// net/snmp, net/sockstat and net/sockstat6: cheap to read (the kernel sums
// per-cpu counters, it walks no socket table), and they move whenever a
// TCP connection is opened (ActiveOpens and PassiveOpens only grow), is
// established or leaves ESTABLISHED/CLOSE_WAIT, a socket is hashed or
// unhashed (listen, bind, close: inuse), or a TIME_WAIT socket comes or
// goes. Equal Counters at two polls say the namespace's socket list most
// likely did not change; what they miss (a listener closed and another
// opened between two polls, an ESTABLISHED socket turned CLOSE_WAIT, a
// bound UDP socket connected) is why a reader still reads each namespace
// in full now and then. Counters that are global rather than the
// namespace's (orphan, alloc, mem) are left out: every namespace's
// traffic would move them.
type Counters struct {
	// Snmp's Tcp: ActiveOpens, PassiveOpens, AttemptFails, EstabResets,
	// CurrEstab.
	ActiveOpens, PassiveOpens, AttemptFails, EstabResets, CurrEstab uint64
	// Sockstat's inuse counts and TIME_WAIT. Its "sockets: used" counts
	// sockets of every family, unix sockets too: it moves with every
	// D-Bus or journald client on an idle host, and says nothing the
	// others do not.
	TCPInuse, TCPTimeWait, UDPInuse, TCP6Inuse, UDP6Inuse uint64
}

// maxCountersFile bounds a read of one of the files: the kernel writes a
// few hundred bytes; a larger file is not the kernel's.
const maxCountersFile = 16 << 10

// CounterReader reads Counters with buffers it reuses.
type CounterReader struct {
	buf  []byte
	path []byte
}

// Read reads the Counters of the namespace whose net directory is dir
// (/proc/PID/net, or /proc/thread-self/net on a thread inside it). A
// missing sockstat6 (IPv6 off) leaves the IPv6 counts at zero.
func (r *CounterReader) Read(dir string) (Counters, error) {
	var c Counters
	if r.buf == nil {
		r.buf = make([]byte, maxCountersFile)
	}
	b, err := r.readSmall(dir, "/snmp")
	if err != nil {
		return c, err
	}
	if err := parseSnmp(b, &c); err != nil {
		return c, fmt.Errorf("%s/snmp: %w", dir, err)
	}
	if b, err = r.readSmall(dir, "/sockstat"); err != nil {
		return c, err
	}
	if err := parseSockstat(b, &c); err != nil {
		return c, fmt.Errorf("%s/sockstat: %w", dir, err)
	}
	b, err = r.readSmall(dir, "/sockstat6")
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := parseSockstat(b, &c); err != nil {
		return c, fmt.Errorf("%s/sockstat6: %w", dir, err)
	}
	return c, nil
}

// readSmall reads the whole file dir+name, of at most len(r.buf) bytes,
// into r.buf, without allocating.
func (r *CounterReader) readSmall(dir, name string) ([]byte, error) {
	r.path = append(append(append(r.path[:0], dir...), name...), 0)
	fd, err := openat(r.path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir + name, Err: err}
	}
	defer unix.Close(fd)
	n := 0
	for n < len(r.buf) {
		k, err := unix.Read(fd, r.buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s%s: %w", dir, name, err)
		}
		if k == 0 {
			return r.buf[:n], nil
		}
		n += k
	}
	return nil, fmt.Errorf("reading %s%s: larger than %d bytes", dir, name, len(r.buf))
}

// ParseCounters parses the three files' contents (sockstat6 may be nil).
func ParseCounters(snmp, sockstat, sockstat6 []byte) (Counters, error) {
	var c Counters
	if err := parseSnmp(snmp, &c); err != nil {
		return c, fmt.Errorf("snmp: %w", err)
	}
	if err := parseSockstat(sockstat, &c); err != nil {
		return c, fmt.Errorf("sockstat: %w", err)
	}
	if err := parseSockstat(sockstat6, &c); err != nil {
		return c, fmt.Errorf("sockstat6: %w", err)
	}
	return c, nil
}

// field returns the first space-separated field of b and the rest.
func field(b []byte) (f, rest []byte) {
	for len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	i := bytes.IndexByte(b, ' ')
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i:]
}

// parseUint parses a decimal counter without allocating.
func parseUint(b []byte) (uint64, error) {
	if len(b) == 0 || len(b) > 20 {
		return 0, fmt.Errorf("%q is not a counter", b)
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a counter", b)
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, fmt.Errorf("%q overflows", b)
		}
		n = n*10 + d
	}
	return n, nil
}

// snmpCounter points at the Counters field of a Tcp: counter name.
func snmpCounter(c *Counters, name []byte) *uint64 {
	switch string(name) {
	case "ActiveOpens":
		return &c.ActiveOpens
	case "PassiveOpens":
		return &c.PassiveOpens
	case "AttemptFails":
		return &c.AttemptFails
	case "EstabResets":
		return &c.EstabResets
	case "CurrEstab":
		return &c.CurrEstab
	}
	return nil
}

// parseSnmp finds the "Tcp:" header line and the value line after it and
// sets the connection counters (MaxConn, -1, is not read).
func parseSnmp(b []byte, c *Counters) error {
	var header []byte
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		rest, ok := bytes.CutPrefix(line, []byte("Tcp: "))
		if !ok {
			continue
		}
		if header == nil {
			header = rest
			continue
		}
		names, values := header, rest
		found := 0
		for {
			var name, value []byte
			name, names = field(names)
			value, values = field(values)
			if len(name) == 0 || len(value) == 0 {
				if len(name) != 0 || len(value) != 0 {
					return errors.New("Tcp: as many names as values expected")
				}
				break
			}
			dst := snmpCounter(c, name)
			if dst == nil {
				continue
			}
			v, err := parseUint(value)
			if err != nil {
				return fmt.Errorf("Tcp: %s: %w", name, err)
			}
			*dst = v
			found++
		}
		if found != 5 {
			return fmt.Errorf("Tcp: %d of the 5 counters read", found)
		}
		return nil
	}
	return errors.New("no Tcp: lines")
}

// sockstatCounter points at the Counters field of a sockstat key.
func sockstatCounter(c *Counters, proto, key []byte) *uint64 {
	switch string(proto) {
	case "TCP":
		switch string(key) {
		case "inuse":
			return &c.TCPInuse
		case "tw":
			return &c.TCPTimeWait
		}
	case "UDP":
		if string(key) == "inuse" {
			return &c.UDPInuse
		}
	case "TCP6":
		if string(key) == "inuse" {
			return &c.TCP6Inuse
		}
	case "UDP6":
		if string(key) == "inuse" {
			return &c.UDP6Inuse
		}
	}
	return nil
}

// parseSockstat reads "PROTO: key value key value ..." lines of sockstat
// or sockstat6, the ones Counters holds.
func parseSockstat(b []byte, c *Counters) error {
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		proto, rest, ok := bytes.Cut(line, []byte(": "))
		if !ok {
			continue
		}
		for {
			var key, value []byte
			key, rest = field(rest)
			if len(key) == 0 {
				break
			}
			value, rest = field(rest)
			if len(value) == 0 {
				return fmt.Errorf("%s: %s has no value", proto, key)
			}
			dst := sockstatCounter(c, proto, key)
			if dst == nil {
				continue
			}
			v, err := parseUint(value)
			if err != nil {
				return fmt.Errorf("%s %s: %w", proto, key, err)
			}
			*dst = v
		}
	}
	return nil
}
