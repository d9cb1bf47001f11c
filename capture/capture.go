// Package capture sees every TCP connection and UDP exchange as it
// happens, through eBPF programs (capture.bpf.c) that attribute each one
// in the kernel, at that moment, to the process that made it, and hands
// them to the pipeline between polls: the connections that opened or
// closed since the last call (Drain), the ended ones with their counters
// (Flows), and the owners of sockets no process holds any more (Owner).
//
// It needs BTF, tp_btf programs and CAP_BPF with CAP_PERFMON (or root);
// where any of that is missing, Open returns a *model.UnavailableError
// saying what. The UDP hooks need a cgroup2 hierarchy and CAP_NET_ADMIN
// too; without them the capture sees TCP only (UDPUnavailable).
package capture

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
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
	// kernel keeps an owner for (a preallocated LRU map, 8 bytes of key,
	// 48 of value and the map's own per-entry overhead).
	Connections uint32
	// Listeners is how many listening ports the kernel keeps a holder for.
	Listeners uint32
	// UDPPairs is how many (process, local, remote) UDP pairs the kernel
	// counts datagrams for (a preallocated LRU map, 48 bytes of key and 64
	// of value an entry).
	UDPPairs uint32
	// RingBuffer is the size in bytes of the ring buffer records cross to
	// user space in: a power of two, a multiple of the page size.
	RingBuffer uint32
}

// DefaultSizes are the sizes config.Default gives.
var DefaultSizes = Sizes{Connections: 65536, Listeners: 4096, UDPPairs: 16384, RingBuffer: 4 << 20}

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
	// ReadInterval is how long records may wait in the ring buffer before
	// the reader takes them on its own; 0 means a second. The programs
	// wake it sooner when a sixteenth of the buffer waits, and Drain and
	// Flows take everything handed over before they were called.
	ReadInterval time.Duration
	// ReadyPending is how many connections a read must leave pending for
	// Ready to say so; 0 means never (Ready then says flows only).
	ReadyPending int
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
	// Cookie is the kernel's socket cookie of a TCP socket, which pairs
	// its open with its close; 0 for UDP pairs.
	Cookie uint64
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
	// Skipped counts runs of the TCP programs the kernel skipped because
	// the same program was running on that CPU (a softirq interrupting
	// it); RecoveredCloses the closes skipped that way and handed over
	// when the socket was destroyed. Linux 6.1 and later skip such runs
	// (and count them); before, they run nested and none is skipped.
	Skipped, RecoveredCloses uint64
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
	// wait parks the reading goroutine until the programs wake it, the
	// read interval passes, or sync wants it (syncWanted).
	wait       *ringWait
	syncWanted atomic.Bool
	closing    atomic.Bool
	// done closes when the reading goroutine has returned (or, never
	// started, at Close).
	done      chan struct{}
	startOnce sync.Once
	started   atomic.Bool
	// ready gets a token after a read that left something to take
	// (Ready).
	ready chan struct{}
	// syncMu makes one sync at a time; synced gets a token from the
	// reader each time it has read everything up to a flush.
	syncMu sync.Mutex
	synced chan struct{}
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
	// flowProcs are the processes of the flows handed over this window,
	// by owner (flowProcess).
	flowProcs map[Owner]*model.Process
	stats     Stats
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
	if opts.ReadInterval <= 0 {
		opts.ReadInterval = time.Second
	}
	root := opts.CgroupRoot
	if root == "" {
		// None found: TCP only, and UDPUnavailable says why.
		root, _ = cgroup2Root("/proc/self/mountinfo")
	}
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, &model.UnavailableError{Source: Name, Err: fmt.Errorf("kernel BTF: %w", err)}
	}
	progs, err := load(kernel, opts.Sizes, root)
	if err != nil {
		return nil, unavailable(err)
	}
	rd, err := ringbuf.NewReader(progs.maps.ConnbeatEvents)
	if err != nil {
		progs.close()
		return nil, fmt.Errorf("opening the capture's ring buffer: %w", err)
	}
	// ReadInto never blocks: the reading goroutine waits in wait.
	rd.SetDeadline(time.Unix(1, 0))
	wait, err := newRingWait(progs.maps.ConnbeatEvents.FD())
	if err != nil {
		rd.Close()
		progs.close()
		return nil, err
	}
	var mono unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono); err != nil {
		wait.close()
		rd.Close()
		progs.close()
		return nil, fmt.Errorf("reading CLOCK_MONOTONIC: %w", err)
	}
	var self unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &self); err != nil {
		rd.Close()
		progs.close()
		wait.close()
		return nil, fmt.Errorf("reading the agent's network namespace: %w", err)
	}
	c := &Capture{
		opts:       opts,
		netns:      self.Ino,
		progs:      progs,
		rd:         rd,
		wait:       wait,
		done:       make(chan struct{}),
		synced:     make(chan struct{}, 1),
		ready:      make(chan struct{}, 1),
		monoToWall: time.Duration(time.Now().UnixNano() - mono.Nano()),
		pending:    map[uint64]int{},
		closed:     newClosedOwners(closedOwnersMax, closedOwnersTTL),
		flowProcs:  map[Owner]*model.Process{},
	}
	if !opts.paused {
		c.start()
	}
	return c, nil
}

// start starts reading the ring buffer, once.
func (c *Capture) start() {
	c.startOnce.Do(func() {
		c.started.Store(true)
		go c.read()
	})
}

// unavailable wraps a failure to load or attach, saying which privileges
// are missing when that is the cause.
func unavailable(err error) error {
	hint := ""
	var verr *ebpf.VerifierError
	if errors.Is(err, os.ErrPermission) && !errors.As(err, &verr) {
		hint = " (needs CAP_BPF and CAP_PERFMON, and CAP_NET_ADMIN for UDP, or root)"
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
	c.closing.Store(true)
	err := c.wait.close()
	c.startOnce.Do(func() { close(c.done) }) // never started
	<-c.done
	return errors.Join(err, c.rd.Close(), c.progs.close())
}

// read folds the ring buffer's records in until Close. The programs
// do not wake it for each record (capture.bpf.c, submit): it reads what
// waits every ReadInterval, when a sixteenth of the buffer waits, and when
// sync asks. After a read that left flows or ReadyPending connections to
// take, it says so on ready.
func (c *Capture) read() {
	defer close(c.done)
	var rr reading
	for {
		// Taken before the records are read, so that everything handed
		// over before sync asked is read before its token is sent.
		wanted := c.syncWanted.Swap(false)
		if !c.readAll(&rr) {
			return
		}
		c.signalReady()
		if wanted {
			select {
			case c.synced <- struct{}{}:
			default:
			}
		}
		if err := c.wait.setDeadline(time.Now().Add(c.opts.ReadInterval)); err != nil {
			return // closed
		}
		if c.syncWanted.Load() {
			continue // asked after the swap; its wake may predate the deadline
		}
		switch err := c.wait.wait(); {
		case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
		case c.closing.Load():
			return
		default:
			// Not expected from an open file; do not spin on it.
			c.mu.Lock()
			c.stats.DecodeErrors++
			c.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// reading is the reading goroutine's buffers.
type reading struct {
	rec ringbuf.Record
	r   record
	nm  names
}

// readAll folds in every record waiting in the ring buffer; false when the
// reader was closed.
func (c *Capture) readAll(rr *reading) bool {
	for n := 1; ; n++ {
		if n%readySignalEvery == 0 {
			// A reader that records outrun still hands on what it
			// read, in batches of this many.
			c.signalReady()
		}
		if err := c.rd.ReadInto(&rr.rec); err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				return true // all read
			case errors.Is(err, ringbuf.ErrClosed):
				return false
			}
			// Not expected from an open reader.
			c.mu.Lock()
			c.stats.DecodeErrors++
			c.mu.Unlock()
			return true
		}
		err := decodeRecordNames(rr.rec.RawSample, nativeEndian, &rr.r, &rr.nm)
		c.mu.Lock()
		c.stats.Records++
		if err != nil {
			c.stats.DecodeErrors++
		} else {
			c.apply(&rr.r)
		}
		c.mu.Unlock()
	}
}

// readySignalEvery is how many records a long read takes in between two
// looks at whether it left something to take (signalReady).
const readySignalEvery = 2048

// wall converts a CLOCK_MONOTONIC time of the kernel's.
func (c *Capture) wall(ns uint64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(ns)).Add(c.monoToWall)
}

// sync returns once the reader has folded in every record the programs
// handed over before the call (or after a second: a reader that slow
// gives what it has).
func (c *Capture) sync() {
	if !c.started.Load() {
		return
	}
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	select {
	case <-c.synced: // a late token of an earlier sync that gave up
	default:
	}
	c.syncWanted.Store(true)
	c.wait.wake()
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-c.synced:
	case <-c.done:
	case <-t.C:
	}
}

// Drain appends the connections, listeners and UDP pairs seen opening or
// closing since the last call to dst and forgets them. An empty dst
// becomes the capture's buffer in exchange for its own, so that a
// caller's buffer and the capture's are not both sized to a burst.
func (c *Capture) Drain(dst []Conn) []Conn {
	c.sync()
	return c.DrainRead(dst)
}

// DrainRead is Drain without waiting for the reader: it hands over what
// has been read from the ring buffer, for a caller that drains between
// two polls to keep the pending connections few; the next call has the
// rest.
func (c *Capture) DrainRead(dst []Conn) []Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.pending)
	if len(dst) == 0 {
		out := c.conns
		c.conns = dst[:0]
		return out
	}
	dst = append(dst, c.conns...)
	c.conns = c.conns[:0]
	return dst
}

// Ready receives a token after a read of the ring buffer that left flows
// to take (ReadFlows), or at least Options.ReadyPending connections
// (DrainRead): a consumer that waits on it takes them as they come, in
// small batches under churn, and wakes for nothing on a quiet host.
func (c *Capture) Ready() <-chan struct{} { return c.ready }

// signalReady gives Ready a token if the last read left something to take.
func (c *Capture) signalReady() {
	c.mu.Lock()
	some := len(c.flows) > 0 || (c.opts.ReadyPending > 0 && len(c.conns) >= c.opts.ReadyPending)
	c.mu.Unlock()
	if some {
		select {
		case c.ready <- struct{}{}:
		default: // a token waits already
		}
	}
}

// Pending is how many connections the next Drain would hand over of
// those read so far.
func (c *Capture) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.conns)
}

// Flows appends the connections that ended since the last call to dst
// and forgets them; an empty dst is exchanged for the capture's buffer
// (Drain). It hands over nothing unless Options.KeepFlows.
func (c *Capture) Flows(dst []model.ConnFlow) []model.ConnFlow {
	c.sync()
	return c.ReadFlows(dst)
}

// ReadFlows is Flows without waiting for the reader: it hands over the
// flows already read from the ring buffer, for a caller that takes them
// often (and so holds no burst of them) and may leave the rest to the
// next call.
func (c *Capture) ReadFlows(dst []model.ConnFlow) []model.ConnFlow {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(dst) == 0 {
		out := c.flows
		clear(dst[:cap(dst)]) // the processes its last contents point to
		c.flows = dst[:0]
		return out
	}
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

// UDPUnavailable returns why the UDP hooks do not run (no cgroup2
// hierarchy, no CAP_NET_ADMIN), nil when they do: the capture then sees
// TCP only.
func (c *Capture) UDPUnavailable() error { return c.progs.udp }

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
	s.RecoveredCloses = kernel[cntCloseRecovered]
	// A diagnostic: a kernel that cannot say leaves it 0 rather than
	// failing the poll that asks.
	s.Skipped, _ = c.progs.skipped()
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
	err := c.progs.maps.ConnbeatListeners.Update(&key, &val, ebpf.UpdateNoExist)
	if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("seeding the capture's listener %d: %w", port, err)
	}
	return nil
}
