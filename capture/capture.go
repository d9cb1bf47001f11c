// Package capture sees every TCP connection and UDP exchange as it
// happens, through eBPF programs (capture.bpf.c) that attribute each one
// in the kernel, at that moment, to the process that made it, and hands
// them to the pipeline between polls: the connections that opened or
// closed since the last call (Drain), the ended ones with their counters
// (Flows), and the owners of sockets no process holds any more (Owner).
//
// It needs BTF, tp_btf programs, cgroup2 and CAP_BPF with CAP_PERFMON (or
// root) and CAP_NET_ADMIN for the cgroup hooks; where any of that is
// missing, Open returns a *model.UnavailableError saying what.
package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/connbeat/connbeat/model"
)

// Name is the capture's name in logs and errors.
const Name = "capture"

// Sizes bound the capture's kernel state.
type Sizes struct {
	// Connections is how many TCP connections (open or being opened) the
	// kernel keeps an owner for (an LRU map, 48 bytes of value an entry).
	Connections uint32
	// Listeners is how many listening ports the kernel keeps a holder for.
	Listeners uint32
	// UDPPairs is how many (process, local, remote) UDP pairs the kernel
	// counts datagrams for (an LRU map, 112 bytes an entry).
	UDPPairs uint32
	// RingBuffer is the size in bytes of the ring buffer records cross to
	// user space in: a power of two, a multiple of the page size.
	RingBuffer uint32
}

// DefaultSizes are the sizes config.Default gives.
var DefaultSizes = Sizes{Connections: 65536, Listeners: 4096, UDPPairs: 16384, RingBuffer: 1 << 20}

// Options configure a capture.
type Options struct {
	Sizes Sizes
	// KeepFlows keeps ended connections for Flows; off, they cost nothing.
	KeepFlows bool
	// MaxFlows bounds the ended flows kept between two calls of Flows;
	// more are counted as dropped. 0 means 65536.
	MaxFlows int
	// MaxPending bounds the connections kept between two calls of Drain;
	// 0 means 65536.
	MaxPending int
	// UDPFlowTimeout is how long a UDP pair stays idle before its flow ends.
	UDPFlowTimeout time.Duration
	// CgroupRoot is the cgroup2 mount the UDP hooks attach to; empty finds
	// it (/sys/fs/cgroup on pure v2 hosts, /sys/fs/cgroup/unified on hybrid
	// ones).
	CgroupRoot string

	// paused leaves the ring buffer unread until start (tests fill it).
	paused bool
}

// Conn is a connection (or UDP pair) the capture saw, with the process
// the kernel attributed it to.
type Conn struct {
	Socket    model.Socket
	Direction model.Direction // Inbound, Outbound; Listening for a listener
	Owner     Owner           // PID 0 when unknown
	// Closed says the socket is gone: it opened and closed (or only
	// closed) since the last Drain.
	Closed bool
}

// Stats are the capture's counters since Open.
type Stats struct {
	// Records read from the ring buffer, and those that did not decode.
	Records, DecodeErrors uint64
	// Lost counts records the kernel dropped because the ring buffer was
	// full.
	Lost uint64
	// ConnInsertFailed, UDPInsertFailed and ListenInsertFailed count
	// kernel map inserts that failed; UntrackedCloses closes of
	// connections the kernel had no entry for (opened before the capture
	// started, or evicted from a full map).
	ConnInsertFailed, UDPInsertFailed, ListenInsertFailed, UntrackedCloses uint64
	// Evicted counts entries the kernel's LRU maps pushed out to make room,
	// as of the last Reconcile.
	Evicted uint64
	// PendingDropped and FlowsDropped count connections and flows left out
	// because Drain or Flows was not called in time.
	PendingDropped, FlowsDropped uint64
}

// Capture runs the programs and folds their records into what the next
// Drain, Flows and Owner calls hand over. Its methods are safe for
// concurrent use with its reading goroutine.
type Capture struct {
	opts  Options
	progs *programs
	rd    *ringbuf.Reader
	// done closes when the reading goroutine has returned (or, never
	// started, at Close).
	done      chan struct{}
	startOnce sync.Once
	// monoToWall converts the kernel's CLOCK_MONOTONIC nanoseconds.
	monoToWall time.Duration
	// netns is the inode of the agent's network namespace, which sources
	// that read only that namespace leave as 0 in their sockets.
	netns uint64

	mu      sync.Mutex
	pending map[uint64]int // cookie -> index in conns, for an open+close pair
	conns   []Conn
	flows   []model.ConnFlow
	// closed remembers the owner of recently closed connections by their
	// addresses, for TIME_WAIT sockets the socket table still lists.
	closed *closedOwners
	stats  Stats
}

// Open loads and attaches the programs and starts reading their records.
func Open(opts Options) (*Capture, error) {
	if err := opts.Sizes.Validate(); err != nil {
		return nil, err
	}
	if opts.MaxFlows <= 0 {
		opts.MaxFlows = 65536
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = 65536
	}
	if opts.UDPFlowTimeout <= 0 {
		opts.UDPFlowTimeout = 30 * time.Second
	}
	root := opts.CgroupRoot
	if root == "" {
		var err error
		if root, err = cgroup2Root("/proc/self/mountinfo"); err != nil {
			return nil, &model.UnavailableError{Source: Name, Err: err}
		}
	}
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, &model.UnavailableError{Source: Name, Err: fmt.Errorf("kernel BTF: %w", err)}
	}
	progs, err := load(kernel, opts.Sizes, root)
	if err != nil {
		return nil, unavailable(err)
	}
	rd, err := ringbuf.NewReader(progs.objs.ConnbeatEvents)
	if err != nil {
		progs.close()
		return nil, fmt.Errorf("opening the capture's ring buffer: %w", err)
	}
	var mono unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono); err != nil {
		rd.Close()
		progs.close()
		return nil, fmt.Errorf("reading CLOCK_MONOTONIC: %w", err)
	}
	var self unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		rd.Close()
		progs.close()
		return nil, fmt.Errorf("reading the agent's network namespace: %w", err)
	}
	c := &Capture{
		opts:       opts,
		netns:      self.Ino,
		progs:      progs,
		rd:         rd,
		done:       make(chan struct{}),
		monoToWall: time.Duration(time.Now().UnixNano() - mono.Nano()),
		pending:    map[uint64]int{},
		closed:     newClosedOwners(closedOwnersMax, closedOwnersTTL),
	}
	if !opts.paused {
		c.start()
	}
	return c, nil
}

// start starts reading the ring buffer, once.
func (c *Capture) start() { c.startOnce.Do(func() { go c.read() }) }

// unavailable wraps a failure to load or attach, saying which privileges
// are missing when that is the cause.
func unavailable(err error) error {
	hint := ""
	var verr *ebpf.VerifierError
	if errors.Is(err, os.ErrPermission) && !errors.As(err, &verr) {
		hint = " (needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN, or root)"
	}
	return &model.UnavailableError{Source: Name, Err: fmt.Errorf("%w%s", err, hint)}
}

// Validate checks the sizes, saying which is wrong.
func (s Sizes) Validate() error {
	var errs []error
	for _, v := range []struct {
		name      string
		n, lo, hi uint32
	}{
		{"connections", s.Connections, 1024, 1 << 24},
		{"listeners", s.Listeners, 64, 1 << 20},
		{"udp_pairs", s.UDPPairs, 256, 1 << 24},
	} {
		if v.n < v.lo || v.n > v.hi {
			errs = append(errs, fmt.Errorf("capture map %s: %d entries, want %d .. %d", v.name, v.n, v.lo, v.hi))
		}
	}
	page := uint32(os.Getpagesize())
	if rb := s.RingBuffer; rb < page || rb > 1<<30 || rb&(rb-1) != 0 {
		errs = append(errs, fmt.Errorf("capture ring buffer: %d bytes, want a power of two from the page size (%d) to 1 GiB", rb, page))
	}
	return errors.Join(errs...)
}

// Close detaches the programs and stops reading.
func (c *Capture) Close() error {
	err := c.rd.Close()
	c.startOnce.Do(func() { close(c.done) }) // never started
	<-c.done
	return errors.Join(err, c.progs.close())
}

// read folds the ring buffer's records in until Close.
func (c *Capture) read() {
	defer close(c.done)
	var rec ringbuf.Record
	var r record
	for {
		if err := c.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			continue
		}
		err := decodeRecord(rec.RawSample, nativeEndian, &r)
		c.mu.Lock()
		c.stats.Records++
		if err != nil {
			c.stats.DecodeErrors++
		} else {
			c.apply(&r)
		}
		c.mu.Unlock()
	}
}

// wall converts a CLOCK_MONOTONIC time of the kernel's.
func (c *Capture) wall(ns uint64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(ns)).Add(c.monoToWall)
}

// apply folds one record in; c.mu is held.
func (c *Capture) apply(r *record) {
	switch r.typ {
	case recListen, recUnlisten:
		r.sock.State = model.StateListen
		r.sock.RemoteIP = netip.Addr{}
		c.add(r.cookie, Conn{Socket: r.sock, Direction: model.Listening, Owner: r.owner, Closed: r.typ == recUnlisten})
	case recOpen:
		r.sock.State = model.StateEstablished
		c.add(r.cookie, Conn{Socket: r.sock, Direction: direction(r.flags), Owner: r.owner})
	case recClose:
		c.closeTCP(r)
	case recUDP:
		r.sock.State = model.StateEstablished
		c.add(0, Conn{Socket: r.sock, Direction: udpDirection(r.flags), Owner: r.owner})
	}
}

func direction(flags uint8) model.Direction {
	if flags&flagPassive != 0 {
		return model.Inbound
	}
	return model.Outbound
}

// udpDirection: a pair first seen receiving was started by the peer.
func udpDirection(flags uint8) model.Direction {
	if flags&flagRecv != 0 {
		return model.Inbound
	}
	return model.Outbound
}

// add keeps a connection for the next Drain; a close of a connection
// opened since the last Drain replaces its open. cookie 0 is never paired.
func (c *Capture) add(cookie uint64, conn Conn) {
	if i, ok := c.pending[cookie]; ok && cookie != 0 {
		if conn.Owner.PID == 0 {
			conn.Owner = c.conns[i].Owner
		}
		c.conns[i] = conn
		return
	}
	if len(c.conns) >= c.opts.MaxPending {
		c.stats.PendingDropped++
		return
	}
	if cookie != 0 {
		c.pending[cookie] = len(c.conns)
	}
	c.conns = append(c.conns, conn)
}

// closeTCP folds in a TCP close: a connection for the next Drain (unless
// it never opened), its owner for TIME_WAIT lookups, and its flow.
func (c *Capture) closeTCP(r *record) {
	end := endOf(r.oldState, r.skErr)
	dir := direction(r.flags)
	r.sock.State = model.StateEstablished
	if end != model.EndRefused && end != model.EndFailed {
		c.add(r.cookie, Conn{Socket: r.sock, Direction: dir, Owner: r.owner, Closed: true})
		if r.owner.PID != 0 {
			c.closed.put(r.sock, r.owner, c.wall(r.ts))
		}
	} else if i, ok := c.pending[r.cookie]; ok {
		// Never opened: nothing to report but the flow.
		c.conns[i].Closed = true
	}
	if !c.opts.KeepFlows {
		return
	}
	if len(c.flows) >= c.opts.MaxFlows {
		c.stats.FlowsDropped++
		return
	}
	r.sock.State = model.StateClose
	f := model.ConnFlow{
		Socket:        r.sock,
		Direction:     dir,
		Process:       r.owner.process(),
		Start:         c.wall(r.start),
		End:           c.wall(r.ts),
		BytesSent:     r.counters.bytesSent,
		BytesReceived: r.counters.bytesReceived,
		SegsSent:      uint64(r.counters.segsSent),
		SegsReceived:  uint64(r.counters.segsReceived),
		Retransmits:   r.counters.retrans,
		SRTTMicros:    r.counters.srttMicros,
		Ended:         end,
	}
	if f.Start.IsZero() {
		f.Start = f.End // opened before the capture started, or evicted
	}
	c.flows = append(c.flows, f)
}

// process is what the kernel said about the owner, for a flow.
func (o Owner) process() *model.Process {
	if o.PID == 0 {
		return nil
	}
	return &model.Process{PID: o.PID, Name: o.Comm, UID: o.UID}
}

// Drain appends the connections, listeners and UDP pairs seen opening or
// closing since the last call to dst and forgets them.
func (c *Capture) Drain(dst []Conn) []Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	dst = append(dst, c.conns...)
	c.conns = c.conns[:0]
	clear(c.pending)
	return dst
}

// Flows appends the connections that ended since the last call to dst
// and forgets them. It hands over nothing unless Options.KeepFlows.
func (c *Capture) Flows(dst []model.ConnFlow) []model.ConnFlow {
	c.mu.Lock()
	defer c.mu.Unlock()
	dst = append(dst, c.flows...)
	clear(c.flows)
	c.flows = c.flows[:0]
	return dst
}

// Owner returns the process that owned a connection now closed whose
// socket lingers (TIME_WAIT), by its addresses; ok is false when the
// capture saw no such close. A socket with NetNS 0 is one of the agent's
// namespace.
func (c *Capture) Owner(s *model.Socket) (Owner, bool) {
	k := *s
	if k.NetNS == 0 {
		k.NetNS = c.netns
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed.get(&k)
}

// NetNS returns the inode of the agent's network namespace.
func (c *Capture) NetNS() uint64 { return c.netns }

// Stats returns the counters, the kernel's included.
func (c *Capture) Stats() (Stats, error) {
	kernel, err := c.progs.counters()
	c.mu.Lock()
	s := c.stats
	c.mu.Unlock()
	if err != nil {
		return s, err
	}
	s.Lost = kernel[cntLost]
	s.ConnInsertFailed = kernel[cntConnFail]
	s.UDPInsertFailed = kernel[cntUDPFail]
	s.ListenInsertFailed = kernel[cntListenFail]
	s.UntrackedCloses = kernel[cntUntrackedClose]
	return s, nil
}

// SeedListener tells the kernel the holder of a listener that was
// listening before the capture started (found by a read of the socket
// tables), so that the connections it accepts from now on are attributed
// to it. A listener the kernel saw start keeps the owner it saw. netns 0
// is the agent's namespace.
func (c *Capture) SeedListener(netns uint64, port uint16, o Owner) error {
	if netns == 0 {
		netns = c.netns
	}
	key := captureListenKey{Netns: uint32(netns), Port: port}
	val := captureOwner{Tgid: uint32(o.PID), Uid: o.UID, Cgroup: o.Cgroup}
	for i := 0; i < len(val.Comm) && i < len(o.Comm); i++ {
		val.Comm[i] = int8(o.Comm[i])
	}
	err := c.progs.objs.ConnbeatListeners.Update(&key, &val, ebpf.UpdateNoExist)
	if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("seeding the capture's listener %d: %w", port, err)
	}
	return nil
}
