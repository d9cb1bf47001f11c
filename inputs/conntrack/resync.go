package conntrack

// What the input does when the kernel drops events: count them, log it,
// and re-sync from a dump of the table.

import (
	"context"
	"time"

	"github.com/connbeat/connbeat/model"
)

// overrun counts a receive buffer overflow: the kernel dropped events.
// The socket goes on with what it still holds; a dump re-syncs the table
// once it is drained.
func (in *Input) overrun() {
	in.m.enobufs.Inc()
	in.needResync = true
	in.readDrops()
	in.logLoss()
}

// readDrops brings the lost counter up to the socket's Drops.
func (in *Input) readDrops() {
	d, err := netlinkDrops(in.opts.netlinkStats, in.sock.ino)
	if err != nil {
		in.log.Debugf("conntrack: %v", err)
		return
	}
	if lost := d - in.dropsBase; lost > in.m.lost.Get() {
		in.m.lost.Set(lost)
	}
}

// logLoss writes at most one line per window about the overruns since
// the last one.
func (in *Input) logLoss() {
	overruns := in.m.enobufs.Get()
	if overruns == in.lossOverruns || time.Since(in.lossLogged) < in.opts.lossLogEvery {
		return
	}
	lost := in.m.lost.Get()
	in.log.Warnf("conntrack: the %d-byte receive buffer overflowed %d times since the last report and the kernel dropped %d events (%d in all, connbeat.conntrack.lost); open entries are re-read from the table (raise connbeat.conntrack.receive_buffer if this repeats)",
		in.sock.rbuf, overruns-in.lossOverruns, lost-in.lossAt, lost)
	in.lossAt, in.lossOverruns = lost, overruns
	in.lossLogged = time.Now()
}

// resync dumps the table after a loss: entries no event announced are
// reported as NEW (Resync set); tracked entries the dump lacks are
// reported as DESTROY once the events queued meanwhile are read (sweep).
func (in *Input) resync(ctx context.Context, emit func(*model.Flow)) {
	in.needResync = false
	in.gen++
	gen := in.gen
	in.m.resyncs.Inc()
	start := time.Now()
	in.batch = in.batch[:0]
	flush := func() {
		in.ptrs = in.ptrs[:0]
		for i := range in.batch {
			in.ptrs = append(in.ptrs, &in.batch[i])
		}
		if in.opts.Join != nil && len(in.ptrs) > 0 {
			in.opts.Join.Join(ctx, in.ptrs)
		}
		for i := range in.batch {
			f := &in.batch[i]
			e := in.table.put(f, gen)
			e.setJoin(f)
			e.dumped = true
			if f.Process != nil {
				in.m.joined.Inc()
			}
			emit(f)
		}
		in.m.resyncNew.Add(uint64(len(in.batch)))
		in.batch = in.batch[:0]
	}
	listed := 0
	bad, err := in.dump(func(f *model.Flow) {
		listed++
		if e := in.table.get(f); e != nil {
			in.table.touch(e, gen)
			return
		}
		f.Resync = true
		in.batch = append(in.batch, *f)
		if len(in.batch) >= maxBatch {
			flush()
		}
	})
	flush()
	in.m.decodeErrors.Add(uint64(bad))
	if err != nil {
		// Entries seen so far keep the new generation; the sweep would
		// take the others for gone: skip it and try again.
		in.log.Warnf("conntrack: re-sync after lost events failed: %v", err)
		in.needResync = true
		return
	}
	in.sweepGen = gen
	if in.queue != nil {
		in.sweepAfter = in.queue.handed.Load()
	}
	in.readDrops()
	in.log.Infof("conntrack: re-synced from a dump of %d entries in %s", listed, time.Since(start).Round(time.Millisecond))
}

// sweep reports as DESTROY (Resync set) the tracked entries the last dump
// did not list and no event has shown since.
func (in *Input) sweep(ctx context.Context, emit func(*model.Flow)) {
	gen := in.sweepGen
	in.sweepGen = 0
	n := 0
	in.table.staleBefore(gen, func(e *entry) {
		f := e.flow
		f.Event = model.FlowDestroy
		f.Resync = true
		in.table.remove(e)
		if f.Process != nil {
			in.m.joined.Inc()
		}
		emit(&f)
		n++
	})
	in.m.resyncDestroy.Add(uint64(n))
	in.m.tracked.Set(int64(in.table.len()))
	if n > 0 {
		in.log.Infof("conntrack: %d tracked entries were gone from the table, their DESTROY lost: reported with connbeat.conntrack.resync", n)
	}
}
