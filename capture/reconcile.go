package capture

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/connbeat/connbeat/model"
)

// nativeEndian is the byte order the programs write in.
var nativeEndian = func() binary.ByteOrder {
	x := uint16(1)
	if *(*byte)(unsafe.Pointer(&x)) == 1 {
		return binary.LittleEndian
	}
	return binary.BigEndian
}()

// Reconcile is the capture's slow pass, once an aggregation window: it
// ends the UDP pairs idle for longer than the flow timeout (their flows
// for Flows), appends to dst the UDP pairs that exchanged a datagram
// since since, forgets expired TIME_WAIT owners and counts the kernel
// maps' evictions.
func (c *Capture) Reconcile(now, since time.Time, dst []Conn) ([]Conn, error) {
	var (
		key  captureUdpKey
		pair captureUdpPair
		idle []captureUdpKey
	)
	it := c.progs.maps.ConnbeatUdp.Iterate()
	for it.Next(&key, &pair) {
		last := c.wall(pair.LastNs)
		if now.Sub(last) > c.opts.UDPFlowTimeout {
			idle = append(idle, key)
			c.udpFlow(&key, &pair)
			continue
		}
		if !last.Before(since) {
			if conn, err := udpConn(&key, &pair); err == nil {
				dst = append(dst, conn)
			}
		}
	}
	if err := it.Err(); err != nil {
		return dst, fmt.Errorf("reading the capture's UDP pairs: %w", err)
	}
	for i := range idle {
		// Gone already (evicted) is fine.
		_ = c.progs.maps.ConnbeatUdp.Delete(&idle[i])
	}
	entries, err := c.countConns()
	if err != nil {
		return dst, err
	}
	kernel, err := c.progs.counters()
	if err != nil {
		return dst, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed.expire(now, closedOwnersTTL)
	clear(c.flowProcs) // processes that exited since stay no longer
	if in, out := kernel[cntConnInserted], kernel[cntConnDeleted]+uint64(entries); in > out {
		c.stats.Evicted = in - out
	}
	return dst, nil
}

// countConns counts the entries of the kernel's connections map.
func (c *Capture) countConns() (int, error) {
	var key, next uint64
	n := 0
	m := c.progs.maps.ConnbeatConns
	for err := m.NextKey(nil, &next); ; err = m.NextKey(&key, &next) {
		if err != nil {
			if isNotExist(err) {
				return n, nil
			}
			return n, fmt.Errorf("counting the capture's connections: %w", err)
		}
		n++
		key = next
		if n > int(c.opts.Sizes.Connections)*2 {
			return n, nil // the map changed under the walk; enough
		}
	}
}

// udpConn makes a connection of a kernel UDP pair.
func udpConn(key *captureUdpKey, pair *captureUdpPair) (Conn, error) {
	local, err := addr(uint8(key.Family), key.Laddr[:])
	if err != nil {
		return Conn{}, err
	}
	remote, _ := addr(uint8(key.Family), key.Raddr[:])
	dir := model.Outbound
	if pair.Sent == 0 {
		dir = model.Inbound
	}
	return Conn{
		Socket: model.Socket{
			LocalIP: local, RemoteIP: remote, LocalPort: key.Lport, RemotePort: key.Rport,
			State: model.StateEstablished, Transport: model.UDP, UID: pair.Owner.Uid, NetNS: uint64(key.Netns),
		},
		Direction: dir,
		Owner:     ownerOf(&pair.Owner),
	}, nil
}

func ownerOf(o *captureOwner) Owner {
	b := make([]byte, len(o.Comm))
	for i, ch := range o.Comm {
		b[i] = byte(ch)
	}
	return Owner{PID: int32(o.Tgid), UID: o.Uid, Cgroup: o.Cgroup, Comm: comm(b)}
}

// udpFlow keeps the flow of a UDP pair that went idle.
func (c *Capture) udpFlow(key *captureUdpKey, pair *captureUdpPair) {
	if !c.opts.KeepFlows {
		return
	}
	conn, err := udpConn(key, pair)
	if err != nil {
		return
	}
	conn.Socket.State = model.StateClose
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.flows) >= c.opts.MaxFlows {
		c.stats.FlowsDropped++
		return
	}
	c.flows = append(c.flows, model.ConnFlow{
		Socket:       conn.Socket,
		Direction:    conn.Direction,
		Process:      c.flowProcess(conn.Owner),
		Start:        c.wall(pair.FirstNs),
		End:          c.wall(pair.LastNs),
		SegsSent:     pair.Sent,
		SegsReceived: pair.Received,
		Ended:        model.EndTimeout,
	})
}

// parseCgroup2Mount finds the first cgroup2 mount point in mountinfo.
func parseCgroup2Mount(mountinfo []byte) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		// "36 35 0:30 / /sys/fs/cgroup rw,... - cgroup2 cgroup2 rw"
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		if fs := strings.Fields(post); len(fs) == 0 || fs[0] != "cgroup2" {
			continue
		}
		if f := strings.Fields(pre); len(f) >= 5 {
			return f[4], true
		}
	}
	return "", false
}
