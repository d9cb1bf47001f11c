package netns

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
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
	// Sockstat's "sockets: used" and the inuse counts and TIME_WAIT.
	Sockets, TCPInuse, TCPTimeWait, UDPInuse, TCP6Inuse, UDP6Inuse uint64
}

// maxCountersFile bounds a read of one of the files: the kernel writes a
// few hundred bytes; a larger file is not the kernel's.
const maxCountersFile = 16 << 10

// CounterReader reads Counters with a buffer it reuses.
type CounterReader struct {
	buf []byte
}

// Read reads the Counters of the namespace whose net directory is dir
// (/proc/PID/net, or /proc/thread-self/net on a thread inside it). A
// missing sockstat6 (IPv6 off) leaves the IPv6 counts at zero.
func (r *CounterReader) Read(dir string) (Counters, error) {
	var c Counters
	if r.buf == nil {
		r.buf = make([]byte, maxCountersFile)
	}
	b, err := readSmall(dir+"/snmp", r.buf)
	if err != nil {
		return c, err
	}
	if err := parseSnmp(b, &c); err != nil {
		return c, fmt.Errorf("%s/snmp: %w", dir, err)
	}
	if b, err = readSmall(dir+"/sockstat", r.buf); err != nil {
		return c, err
	}
	if err := parseSockstat(b, &c); err != nil {
		return c, fmt.Errorf("%s/sockstat: %w", dir, err)
	}
	b, err = readSmall(dir+"/sockstat6", r.buf)
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

// readSmall reads a whole file of at most len(buf) bytes into buf.
func readSmall(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n := 0
	for n < len(buf) {
		k, err := f.Read(buf[n:])
		n += k
		if err == io.EOF || (err == nil && k == 0) {
			return buf[:n], nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
	}
	return nil, fmt.Errorf("reading %s: larger than %d bytes", path, len(buf))
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

// parseSnmp finds the "Tcp:" header line and the value line after it and
// sets the connection counters. CurrEstab and the others are printed
// unsigned except MaxConn (-1), which is not read.
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
		names, values := bytes.Fields(header), bytes.Fields(rest)
		if len(names) != len(values) {
			return fmt.Errorf("Tcp: %d names, %d values", len(names), len(values))
		}
		found := 0
		for i, name := range names {
			var dst *uint64
			switch string(name) {
			case "ActiveOpens":
				dst = &c.ActiveOpens
			case "PassiveOpens":
				dst = &c.PassiveOpens
			case "AttemptFails":
				dst = &c.AttemptFails
			case "EstabResets":
				dst = &c.EstabResets
			case "CurrEstab":
				dst = &c.CurrEstab
			default:
				continue
			}
			v, err := strconv.ParseUint(string(values[i]), 10, 64)
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
		f := bytes.Fields(rest)
		if len(f)%2 != 0 {
			return fmt.Errorf("%s: odd number of fields", proto)
		}
		for i := 0; i < len(f); i += 2 {
			var dst *uint64
			switch string(proto) + " " + string(f[i]) {
			case "sockets used":
				dst = &c.Sockets
			case "TCP inuse":
				dst = &c.TCPInuse
			case "TCP tw":
				dst = &c.TCPTimeWait
			case "UDP inuse":
				dst = &c.UDPInuse
			case "TCP6 inuse":
				dst = &c.TCP6Inuse
			case "UDP6 inuse":
				dst = &c.UDP6Inuse
			default:
				continue
			}
			v, err := strconv.ParseUint(string(f[i+1]), 10, 64)
			if err != nil {
				return fmt.Errorf("%s %s: %w", proto, f[i], err)
			}
			*dst = v
		}
	}
	return nil
}
