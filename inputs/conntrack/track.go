package conntrack

import (
	"github.com/connbeat/connbeat/model"
)

// entry is what the input remembers of an open conntrack entry: enough to
// give its DESTROY the process joined at NEW (the process may have exited
// by then), and to report the DESTROY itself if that event is lost.
type entry struct {
	flow model.Flow // tuples, zone, mark and start of the NEW; the join
	// joined says the join ran; an entry found by a dump is joined only
	// when an event of it comes.
	joined bool
	// dumped says a re-sync reported the entry as NEW: the kernel's own
	// NEW may still be queued (the entry was created while the dump ran)
	// and is then not reported again.
	dumped bool
	// seen is the re-sync generation that last found the entry open: set
	// at NEW, and by each dump that lists it.
	seen       uint64
	prev, next *entry // recency list, most recent at head.next
}

// table holds the open entries by id, at most max of them: when full the
// least recently seen one is forgotten (its DESTROY then joins afresh,
// and a re-sync may report it as NEW again).
type table struct {
	byID    map[uint32]*entry
	head    entry // sentinel of the recency list
	max     int
	evicted uint64
}

func newTable(max int) *table {
	t := &table{byID: make(map[uint32]*entry), max: max}
	t.head.prev, t.head.next = &t.head, &t.head
	return t
}

func (t *table) len() int { return len(t.byID) }

// get returns the entry of f's id when its original tuple matches (the
// kernel reuses ids of destroyed entries).
func (t *table) get(f *model.Flow) *entry {
	e := t.byID[f.ID]
	if e == nil || e.flow.Original != f.Original || e.flow.Zone != f.Zone {
		return nil
	}
	return e
}

// put remembers f as open, seen in generation gen, and returns its entry.
func (t *table) put(f *model.Flow, gen uint64) *entry {
	if e := t.byID[f.ID]; e != nil {
		t.unlink(e)
		delete(t.byID, f.ID)
	}
	for len(t.byID) >= t.max && t.head.prev != &t.head {
		old := t.head.prev
		t.unlink(old)
		delete(t.byID, old.flow.ID)
		t.evicted++
	}
	e := &entry{seen: gen}
	e.flow = model.Flow{
		ID: f.ID, Zone: f.Zone, Mark: f.Mark,
		Original: f.Original, Reply: f.Reply, Start: f.Start,
	}
	t.byID[f.ID] = e
	t.pushFront(e)
	return e
}

// touch marks e seen in generation gen and most recent.
func (t *table) touch(e *entry, gen uint64) {
	e.seen = gen
	t.unlink(e)
	t.pushFront(e)
}

// remove forgets e.
func (t *table) remove(e *entry) {
	t.unlink(e)
	delete(t.byID, e.flow.ID)
}

// staleBefore calls fn for each entry not seen since generation gen,
// oldest first; fn may remove the entry.
func (t *table) staleBefore(gen uint64, fn func(*entry)) {
	for e := t.head.prev; e != &t.head; {
		prev := e.prev
		if e.seen < gen {
			fn(e)
		}
		e = prev
	}
}

func (t *table) pushFront(e *entry) {
	e.prev, e.next = &t.head, t.head.next
	t.head.next.prev = e
	t.head.next = e
}

func (t *table) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

// setJoin records the join of f on e.
func (e *entry) setJoin(f *model.Flow) {
	e.flow.Direction, e.flow.Process = f.Direction, f.Process
	e.joined = true
}

// copyJoin gives f the join recorded on e.
func (e *entry) copyJoin(f *model.Flow) {
	f.Direction, f.Process = e.flow.Direction, e.flow.Process
}
