// Package conntrack is connbeat's conntrack input: it listens to the
// kernel's connection tracking events (ctnetlink NEW, UPDATE, DESTROY) on
// a socket it reads itself, counts what the kernel drops when the socket's
// buffer overflows, re-syncs from a dump of the table after a loss, and
// hands each flow, joined to its local process, to the caller in the order
// the kernel sent them.
package conntrack

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/monitoring"

	"github.com/connbeat/connbeat/model"
)

// Joiner fills in the Direction and Process of flows, in place. The input
// calls it from its one goroutine, with the flows of a batch in kernel
// order.
type Joiner interface {
	Join(ctx context.Context, flows []*model.Flow)
}

// Options configure the input.
type Options struct {
	// Events are the event types to subscribe to.
	Events []model.FlowEvent
	// ReceiveBuffer is the socket's receive buffer in bytes.
	ReceiveBuffer int
	// QueueSize bounds the bytes of events read from the socket and not
	// yet processed.
	QueueSize int
	// TrackFlows bounds how many open entries are remembered.
	TrackFlows int
	// SetSysctls turns on nf_conntrack_acct, _timestamp and _events where
	// they are 0.
	SetSysctls bool
	// Join, when set, joins flows to processes.
	Join Joiner
	// Logger and Metrics (the registry the counters go in; nil keeps them
	// private).
	Logger  *logp.Logger
	Metrics *monitoring.Registry

	// sysctlRoot and netlinkStats are /proc/sys and /proc/net/netlink;
	// tests point them elsewhere. lossLogEvery is the window of the loss
	// log line.
	sysctlRoot   string
	netlinkStats string
	lossLogEvery time.Duration
}

// DefaultQueueSize is QueueSize when the options leave it out.
const DefaultQueueSize = 64 << 20

const (
	// maxBatch bounds the messages read before a batch is joined and
	// handed over: the join's costs are per batch, not per event.
	maxBatch = 4096
	// housekeepEvery is how long a receive waits before the loop looks
	// at its timers (the loss log line) with nothing to read.
	housekeepEvery = time.Second
)

// Input is the conntrack input. Run it once; Close releases it.
type Input struct {
	opts Options
	log  *logp.Logger
	sock *socket
	// dumps is a second socket for table dumps, opened with the first so
	// that both are in the same network namespace.
	dumps *socket
	table *table
	m     metrics

	gen        uint64 // re-sync generation, bumped by each dump
	needResync bool
	sweepGen   uint64 // > 0: tracked entries not seen since are gone
	// sweepAfter is the last hand-over of the queue before the dump
	// ended: the sweep waits for a drained chunk handed over after it,
	// so that the DESTROYs of entries deleted while the dump ran are
	// read first.
	sweepAfter uint64
	queue      *reader
	dropsBase  uint64 // Drops of the socket when it opened

	lossLogged   time.Time
	lossAt       uint64 // lost counter at the last loss log line
	lossOverruns uint64 // enobufs counter at the last loss log line

	batch []model.Flow
	ptrs  []*model.Flow
}

// Open subscribes to the configured ctnetlink groups with the configured
// receive buffer, turns the sysctls on where asked and allowed, and reads
// the table once so that entries open before the start are known. Without
// CAP_NET_ADMIN the error says it is needed.
func Open(opts Options) (*Input, error) {
	if opts.Logger == nil {
		opts.Logger = logp.NewNopLogger()
	}
	if opts.Metrics == nil {
		opts.Metrics = monitoring.NewRegistry()
	}
	if opts.sysctlRoot == "" {
		opts.sysctlRoot = "/proc/sys"
	}
	if opts.netlinkStats == "" {
		opts.netlinkStats = "/proc/net/netlink"
	}
	if opts.lossLogEvery <= 0 {
		opts.lossLogEvery = 10 * time.Second
	}
	if opts.TrackFlows <= 0 {
		return nil, errors.New("conntrack input: TrackFlows must be positive")
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	groups := groupsFor(opts.Events)
	if len(groups) == 0 {
		return nil, errors.New("conntrack input: no event types to listen to")
	}
	in := &Input{opts: opts, log: opts.Logger, table: newTable(opts.TrackFlows), m: newMetrics(opts.Metrics)}
	if err := in.start(groups); err != nil {
		in.Close()
		return nil, fmt.Errorf("conntrack input: %w", err)
	}
	return in, nil
}

func (in *Input) start(groups []int) error {
	var err error
	if in.sock, err = openSocket(); err != nil {
		return err
	}
	if in.dumps, err = openSocket(); err != nil {
		return err
	}
	got, err := in.sock.setReceiveBuffer(in.opts.ReceiveBuffer)
	if err != nil {
		return err
	}
	if err := in.sock.join(groups); err != nil {
		return err
	}
	// After the join: subscribing loads the kernel's conntrack, which
	// creates the sysctls.
	setupSysctls(in.opts.sysctlRoot, in.opts.SetSysctls, writeSysctl, in.log)
	if in.dropsBase, err = netlinkDrops(in.opts.netlinkStats, in.sock.ino); err != nil {
		// Loss is then known from ENOBUFS only, not counted per event.
		in.log.Warnf("conntrack: cannot count lost events: %v", err)
	}
	n := 0
	bad, err := in.dump(func(f *model.Flow) {
		in.table.put(f, 0)
		n++
	})
	if err != nil {
		return fmt.Errorf("reading the conntrack table: %w", err)
	}
	in.m.decodeErrors.Add(uint64(bad))
	in.m.tracked.Set(int64(in.table.len()))
	in.log.Infof("conntrack: listening to %v events, receive buffer %d bytes, %d entries open at start", in.opts.Events, got, n)
	return nil
}

// Close releases the sockets; a Run in progress returns.
func (in *Input) Close() error {
	var err error
	for _, s := range []*socket{in.sock, in.dumps} {
		if s != nil {
			if cerr := s.close(); err == nil {
				err = cerr
			}
		}
	}
	return err
}

// dump reads the table through the dump socket; after a failure the
// socket is replaced, as it may still hold the rest of that dump.
func (in *Input) dump(fn func(f *model.Flow)) (int, error) {
	if in.dumps == nil {
		s, err := openSocket()
		if err != nil {
			return 0, err
		}
		in.dumps = s
	}
	bad, err := in.dumps.dump(fn)
	if err != nil {
		in.dumps.close()
		in.dumps = nil
	}
	return bad, err
}

// Run reads events until ctx ends or the socket fails, and calls emit for
// each flow in the kernel's order, with re-synced flows where events were
// lost. The flow passed to emit is valid during the call only. One
// goroutine reads the socket into a bounded queue (QueueSize), this one
// decodes, joins and emits, so that a slow join or output makes the queue
// grow rather than the kernel drop events.
func (in *Input) Run(ctx context.Context, emit func(*model.Flow)) error {
	r := newReader(in.sock, in.opts.QueueSize)
	in.queue = r
	readerCtx, stopReader := context.WithCancel(ctx)
	defer stopReader()
	go r.run(readerCtx)
	for {
		c, ok := <-r.full
		if !ok {
			if r.err != nil {
				return fmt.Errorf("conntrack input: receiving events: %w", r.err)
			}
			return nil
		}
		in.batch = in.batch[:0]
		idle := len(c.b) == 0 && c.drained
		drained, seq := in.take(r, c)
		// Whatever else is queued joins the batch: the join's costs are
		// per batch.
	more:
		for len(in.batch) < maxBatch {
			select {
			case c, ok = <-r.full:
				if !ok {
					break more
				}
				drained, seq = in.take(r, c)
			default:
				break more
			}
		}
		if idle && in.m.enobufs.Get() > 0 {
			// Idle after a loss: the kernel reports ENOBUFS once per
			// overrun, but counts every message it drops until the queue
			// empties, some of them after the last count was read.
			in.readDrops()
		}
		in.process(ctx, emit)
		if drained && in.needResync && ctx.Err() == nil {
			in.resync(ctx, emit)
		} else if drained && in.sweepGen > 0 && seq > in.sweepAfter {
			in.sweep(ctx, emit)
		}
		in.logLoss()
	}
}

// take decodes a chunk's datagrams into the batch, counts its overrun
// marks, gives the chunk back and reports whether it was handed over
// with the socket empty, and its hand-over number.
func (in *Input) take(r *reader, c *chunk) (drained bool, seq uint64) {
	c.records(func(buf []byte) {
		if buf == nil {
			in.overrun()
			return
		}
		in.decode(buf)
	})
	drained, seq = c.drained, c.seq
	r.recycle(c)
	return drained, seq
}

// decode appends the flows of one datagram to the batch.
func (in *Input) decode(buf []byte) {
	err := splitMessages(buf, func(m message) error {
		in.batch = append(in.batch, model.Flow{})
		f := &in.batch[len(in.batch)-1]
		ok, err := decodeFlow(m, f)
		if !ok {
			in.batch = in.batch[:len(in.batch)-1]
		}
		if err != nil {
			in.m.decodeErrors.Inc()
			in.log.Debugf("conntrack: undecodable message of type %#x: %v", m.Type, err)
		}
		return nil
	})
	if err != nil {
		in.m.decodeErrors.Inc()
		in.log.Debugf("conntrack: undecodable datagram: %v", err)
	}
}

// process tracks, joins and hands over the batch, in order. A flow whose
// entry carries a join gets it; the others are joined together. A DESTROY
// or UPDATE of an entry created earlier in the same batch shares that
// NEW's join.
func (in *Input) process(ctx context.Context, emit func(*model.Flow)) {
	if len(in.batch) == 0 {
		return
	}
	in.ptrs = in.ptrs[:0]
	var born map[uint32]*model.Flow
	for i := range in.batch {
		f := &in.batch[i]
		in.m.count(f.Event)
		if f.Event == model.FlowNew {
			if e := in.table.get(f); e != nil && e.dumped {
				// Reported by the re-sync that raced with its creation.
				e.dumped = false
				in.table.touch(e, in.gen)
				in.m.superseded.Inc()
				f.Event = 0
				continue
			}
		}
		if f.Event != model.FlowNew {
			if e := in.table.get(f); e != nil && e.joined {
				e.copyJoin(f)
				continue
			}
			if n := born[f.ID]; n != nil && n.Original == f.Original {
				continue // joined with its NEW below
			}
		} else {
			if born == nil {
				born = map[uint32]*model.Flow{}
			}
			born[f.ID] = f
		}
		in.ptrs = append(in.ptrs, f)
	}
	if in.opts.Join != nil && len(in.ptrs) > 0 {
		in.opts.Join.Join(ctx, in.ptrs)
	}
	for i := range in.batch {
		f := &in.batch[i]
		if f.Event == 0 {
			continue // not reported again
		}
		e := in.table.get(f)
		switch f.Event {
		case model.FlowNew:
			in.table.put(f, in.gen).setJoin(f)
		case model.FlowUpdate:
			if n := born[f.ID]; n != nil && n.Original == f.Original && n != f {
				f.Direction, f.Process = n.Direction, n.Process
			}
			if e == nil {
				e = in.table.put(f, in.gen)
			} else {
				in.table.touch(e, in.gen)
			}
			if !e.joined {
				e.setJoin(f)
			}
		case model.FlowDestroy:
			if n := born[f.ID]; n != nil && n.Original == f.Original {
				f.Direction, f.Process = n.Direction, n.Process
			}
			if e != nil {
				in.table.remove(e)
			}
		}
		if f.Process != nil {
			in.m.joined.Inc()
		}
		emit(f)
	}
	in.m.tracked.Set(int64(in.table.len()))
	in.m.evicted.Set(int64(in.table.evicted))
}
