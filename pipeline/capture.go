package pipeline

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/monitoring"

	"github.com/connbeat/connbeat/capture"
	"github.com/connbeat/connbeat/config"
	"github.com/connbeat/connbeat/model"
)

// captureBit marks the inode of a socket the event capture handed over:
// the rest of it indexes the poll's capture owners. Real socket inodes
// are 32-bit numbers (get_next_ino), so the two never meet.
const captureBit = 1 << 63

// maxConnBuffer bounds the buffer of captured connections kept from one
// poll to the next (and handed to the capture in exchange for its own).
const maxConnBuffer = 4096

// maxOwnerCache bounds the processes looked up for captured sockets within
// one aggregation window.
const maxOwnerCache = 16384

// captured is the pipeline's event-driven side (connbeat.capture: events,
// or auto where the capture loads): between two full reads of the socket
// tables, one an aggregation window, each poll hands over only what the
// capture saw open or close since the last one, with the process the
// kernel attributed it to.
type captured struct {
	c      *capture.Capture
	window time.Duration
	// lastFull and nextFull bound the current window.
	lastFull, nextFull time.Time
	// listeners are the last full read's listening sockets, kept up to
	// date with the capture's listens and closes: every poll classifies
	// against them, so that a connection accepted between two full reads
	// is inbound.
	listeners map[listenerKey]capture.Conn
	// owners are the kernel's owners of this poll's captured sockets,
	// indexed by their inode less captureBit; processes those owners
	// were looked up as, within the window.
	owners    []capture.Owner
	processes map[capture.Owner]*model.Process
	conns     []capture.Conn
	// listed is full's set of captured sockets the read listed too.
	listed     map[tuple]bool
	metrics    captureMetrics
	loggedLost uint64
	// trouble is the capture's count of what it missed (troubleOf) as of
	// the last full read.
	trouble uint64
	logger  *logp.Logger
}

type listenerKey struct {
	ip    netip.Addr
	port  uint16
	netns uint64
}

// openCapture opens the event capture connbeat.capture asks for: nil for
// poll, an error naming what is missing for events, and for auto the
// capture where it loads, else nil with one log line saying why.
func openCapture(cfg config.Config, logger *logp.Logger, reg *monitoring.Registry) (*captured, error) {
	if cfg.Capture == config.CapturePoll {
		return nil, nil
	}
	c, err := capture.Open(capture.Options{
		Sizes:          cfg.CaptureMaps.Sizes(),
		KeepFlows:      cfg.FlowEvents,
		UDPFlowTimeout: cfg.UDPFlowTimeout,
		ReadyPending:   earlyPollAt,
	})
	if err != nil {
		if cfg.Capture == config.CaptureEvents {
			return nil, fmt.Errorf("connbeat.capture: events: %w", err)
		}
		logger.Warnf("connection events unavailable (%v): polling the socket tables every %s instead; set connbeat.capture: poll to silence this", err, cfg.PollInterval)
		return nil, nil
	}
	if err := c.UDPUnavailable(); err != nil {
		logger.Warnf("connection events: capturing every TCP connection as it happens, but not UDP (%v); full socket table read every %s", err, cfg.Aggregation)
	} else {
		logger.Infof("connection events: capturing every TCP connection and UDP exchange as it happens; full socket table read every %s", cfg.Aggregation)
	}
	return &captured{
		c:         c,
		window:    cfg.Aggregation,
		listeners: map[listenerKey]capture.Conn{},
		processes: map[capture.Owner]*model.Process{},
		listed:    map[tuple]bool{},
		metrics:   newCaptureMetrics(reg),
		logger:    logger,
	}, nil
}

// due reports whether the poll at now reads the socket tables in full:
// the first, and the first of every aggregation window.
func (e *captured) due(now time.Time) bool {
	return e.nextFull.IsZero() || !now.Before(e.nextFull)
}

// full takes note of a full read at now of sockets: its listeners replace
// the kept ones, its TIME_WAIT sockets get the owner the capture saw close
// them, and what the capture saw since the last poll and the UDP pairs
// active in the window ending now are appended, less what the read listed
// already. It returns the sockets to classify.
func (e *captured) full(now time.Time, sockets []model.Socket) ([]model.Socket, error) {
	since := e.lastFull
	if since.IsZero() {
		since = now.Add(-e.window)
	}
	e.lastFull, e.nextFull = now, now.Add(e.window)
	clear(e.listeners)
	clear(e.processes)
	e.owners = e.owners[:0]
	e.conns = e.c.Drain(e.conns[:0])
	var err error
	e.conns, err = e.c.Reconcile(now, since, e.conns)
	// Which of the captured sockets still open the read lists: a set the
	// size of the churn since the last poll, not of the host.
	clear(e.listed)
	for i := range e.conns {
		if c := &e.conns[i]; !c.Closed && c.Direction != model.Listening {
			e.listed[e.tupleOf(&c.Socket)] = false
		}
	}
	for i := range sockets {
		s := &sockets[i]
		switch {
		case s.State == model.StateListen:
			e.listeners[listenerKey{s.LocalIP, s.LocalPort, s.NetNS}] = capture.Conn{Socket: *s, Direction: model.Listening}
			continue
		case s.Inode == 0 && s.State == model.StateTimeWait:
			if o, ok := e.c.Owner(s); ok {
				s.Inode = captureBit | uint64(len(e.owners))
				e.owners = append(e.owners, o)
			}
		}
		if len(e.listed) > 0 {
			if _, ok := e.listed[e.tupleOf(s)]; ok {
				e.listed[e.tupleOf(s)] = true
			}
		}
	}
	sockets = e.take(sockets, e.listed)
	e.logLost()
	return sockets, err
}

// release drops what a full read sized to the connections of a whole
// window (the capture's pending ones, and those the read listed): the
// polls until the next full read need far less.
func (e *captured) release() {
	e.conns = nil
	e.listed = map[tuple]bool{}
}

// delta returns the sockets of a poll between full reads: the kept
// listeners and what the capture saw since the last poll; with synced,
// everything it had seen when called, else what it has read so far.
func (e *captured) delta(sockets []model.Socket, synced bool) []model.Socket {
	e.owners = e.owners[:0]
	for _, l := range e.listeners {
		if l.Owner.PID == 0 {
			sockets = append(sockets, l.Socket) // from a full read: its inode joins it
		} else {
			sockets = e.appendConn(sockets, &l)
		}
	}
	if synced {
		e.conns = e.c.Drain(e.conns[:0])
	} else {
		e.conns = e.c.DrainRead(e.conns[:0])
	}
	sockets = e.take(sockets, nil)
	if cap(e.conns) > maxConnBuffer {
		e.conns = nil // a burst's: not kept for the polls after it
	}
	return sockets
}

// take appends e.conns, what the capture handed over, keeping the
// listeners up to date. A connection still open that a full read listed
// already (listed) is left out, so that each socket counts once.
func (e *captured) take(sockets []model.Socket, listed map[tuple]bool) []model.Socket {
	for i := range e.conns {
		c := &e.conns[i]
		if c.Direction == model.Listening {
			k := listenerKey{c.Socket.LocalIP, c.Socket.LocalPort, c.Socket.NetNS}
			_, kept := e.listeners[k]
			switch {
			case c.Closed:
				// Gone, but it listened during this poll's window.
				delete(e.listeners, k)
			case kept:
				continue // listed already
			default:
				e.listeners[k] = *c
			}
		}
		if listed != nil && !c.Closed && listed[e.tupleOf(&c.Socket)] {
			continue
		}
		sockets = e.appendConn(sockets, c)
	}
	return sockets
}

func (e *captured) appendConn(sockets []model.Socket, c *capture.Conn) []model.Socket {
	s := c.Socket
	s.Inode = 0
	owner := c.Owner
	if owner.PID == 0 && c.Direction == model.Inbound {
		// Accepted by a listener that was listening before the capture
		// started: its holder, as the full read joined it.
		if l, ok := e.listenerOf(&s); ok {
			if l.Owner.PID == 0 {
				s.Inode = l.Socket.Inode
				return append(sockets, s)
			}
			owner = l.Owner
		}
	}
	if owner.PID != 0 {
		s.Inode = captureBit | uint64(len(e.owners))
		e.owners = append(e.owners, owner)
	}
	return append(sockets, s)
}

// listenerOf finds the kept listener that accepts connections to s's
// local address: one bound to it, or to the wildcard address.
func (e *captured) listenerOf(s *model.Socket) (capture.Conn, bool) {
	for _, ip := range []netip.Addr{s.LocalIP, netip.IPv4Unspecified(), netip.IPv6Unspecified()} {
		if l, ok := e.listeners[listenerKey{ip, s.LocalPort, s.NetNS}]; ok {
			return l, true
		}
		if s.NetNS == e.c.NetNS() {
			if l, ok := e.listeners[listenerKey{ip, s.LocalPort, 0}]; ok {
				return l, true
			}
		}
	}
	return capture.Conn{}, false
}

// seedListeners tells the kernel the holders of a full read's listeners,
// so that it attributes what they accept from now on.
func (e *captured) seedListeners(records []model.Record) {
	for i := range records {
		r := &records[i]
		if r.Kind != model.Listener || r.Process == nil || r.Socket.Inode&captureBit != 0 {
			continue
		}
		err := e.c.SeedListener(r.Socket.NetNS, r.Socket.LocalPort, capture.Owner{PID: r.Process.PID, UID: r.Process.UID, Comm: r.Process.Name})
		if err != nil {
			e.logger.Warnf("%v", err)
			return
		}
	}
}

type tuple struct {
	local, remote         netip.Addr
	localPort, remotePort uint16
	transport             model.Transport
	netns                 uint64
}

// tupleOf is a socket's identity across the socket tables and the
// capture; a source that reads the agent's namespace only leaves its
// sockets' NetNS 0, the capture never does.
func (e *captured) tupleOf(s *model.Socket) tuple {
	ns := s.NetNS
	if ns == 0 {
		ns = e.c.NetNS()
	}
	return tuple{s.LocalIP, s.RemoteIP, s.LocalPort, s.RemotePort, s.Transport, ns}
}

// process returns the process of a captured socket's owner: its details
// read from /proc while it runs (lookup), else what the kernel said.
func (e *captured) process(o capture.Owner, lookup func(pid int32, uid uint32) *model.Process) *model.Process {
	if p, ok := e.processes[o]; ok {
		return p
	}
	p := lookup(o.PID, o.UID)
	if p == nil || p.Name != o.Comm {
		// Exited, or the pid is another process's now.
		p = &model.Process{PID: o.PID, Name: o.Comm, Binary: o.Comm, UID: o.UID}
	}
	if len(e.processes) >= maxOwnerCache {
		clear(e.processes)
	}
	e.processes[o] = p
	return p
}

// troubleOf sums the counters that say the capture missed something: a
// record lost, a map full, a connection evicted or left out.
func troubleOf(s capture.Stats) uint64 {
	return s.Lost + s.DecodeErrors + s.ConnInsertFailed + s.UDPInsertFailed + s.ListenInsertFailed +
		s.Evicted + s.PendingDropped + s.Skipped
}

// missed reports whether the capture missed something since the last full
// read, which then must read the kernel's tables rather than reuse a
// read of a namespace whose counters stood still. Counters it cannot read
// count as a miss.
func (e *captured) missed() bool {
	st, err := e.c.Stats()
	if err != nil {
		return true
	}
	t := troubleOf(st)
	missed := t != e.trouble
	e.trouble = t
	return missed
}

// updateMetrics copies the capture's counters to the registry.
func (e *captured) updateMetrics() (capture.Stats, error) {
	st, err := e.c.Stats()
	if err == nil {
		e.metrics.set(st)
	}
	return st, err
}

// logLost says once a window how many records the kernel could not hand
// over since the last time it said so.
func (e *captured) logLost() {
	st, err := e.updateMetrics()
	if err != nil {
		e.logger.Warnf("reading the capture's counters: %v", err)
		return
	}
	if st.Lost > e.loggedLost {
		e.logger.Warnf("connection events: %d records lost to a full ring buffer since the last window (raise connbeat.capture_maps.ring_buffer); the full read of the socket tables covers the connections still open", st.Lost-e.loggedLost)
		e.loggedLost = st.Lost
	}
}

// captureMetrics are the capture's counters in the monitoring registry,
// under capture.
type captureMetrics struct {
	lost, records, decodeErrors, connInsertFailed, udpInsertFailed, listenInsertFailed,
	untrackedCloses, skipped, recoveredCloses, evicted, pendingDropped, flowsDropped *monitoring.Uint
}

func newCaptureMetrics(reg *monitoring.Registry) captureMetrics {
	r := reg.GetOrCreateRegistry("capture")
	return captureMetrics{
		lost:               monitoring.NewUint(r, "lost"),
		records:            monitoring.NewUint(r, "records"),
		decodeErrors:       monitoring.NewUint(r, "decode_errors"),
		connInsertFailed:   monitoring.NewUint(r, "map_insert_failed.connections"),
		udpInsertFailed:    monitoring.NewUint(r, "map_insert_failed.udp_pairs"),
		listenInsertFailed: monitoring.NewUint(r, "map_insert_failed.listeners"),
		untrackedCloses:    monitoring.NewUint(r, "untracked_closes"),
		skipped:            monitoring.NewUint(r, "skipped"),
		recoveredCloses:    monitoring.NewUint(r, "recovered_closes"),
		evicted:            monitoring.NewUint(r, "evicted"),
		pendingDropped:     monitoring.NewUint(r, "pending_dropped"),
		flowsDropped:       monitoring.NewUint(r, "flows_dropped"),
	}
}

func (m captureMetrics) set(s capture.Stats) {
	m.lost.Set(s.Lost)
	m.records.Set(s.Records)
	m.decodeErrors.Set(s.DecodeErrors)
	m.connInsertFailed.Set(s.ConnInsertFailed)
	m.udpInsertFailed.Set(s.UDPInsertFailed)
	m.listenInsertFailed.Set(s.ListenInsertFailed)
	m.untrackedCloses.Set(s.UntrackedCloses)
	m.skipped.Set(s.Skipped)
	m.recoveredCloses.Set(s.RecoveredCloses)
	m.evicted.Set(s.Evicted)
	m.pendingDropped.Set(s.PendingDropped)
	m.flowsDropped.Set(s.FlowsDropped)
}
