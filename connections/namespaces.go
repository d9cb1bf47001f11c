package connections

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/monitoring"

	"github.com/connbeat/connbeat/connections/netns"
	"github.com/connbeat/connbeat/model"
)

// nsReader reads the sockets of one network namespace through one kind of
// source; nsSource runs it for every namespace of a poll.
type nsReader interface {
	name() string
	// enter says whether reading ns must happen on a thread inside it.
	enter(ns netns.Namespace) bool
	// read appends ns's sockets to dst; entered when enter says so.
	read(ctx context.Context, ns netns.Namespace, dst []model.Socket) ([]model.Socket, error)
	// anomalies is what the last read could not use (see anomalous).
	anomalies() int
	// prune releases what the reader keeps for namespaces that live
	// does not hold any more.
	prune(live map[uint64]struct{})
	close() error
}

// nsMetrics count what the polls of every namespace saw and missed,
// under socket_source.netns.
type nsMetrics struct {
	// namespaces read by the last poll; missed ones found but not read
	// (not allowed in), processes whose namespace could not be read.
	namespaces, denied, hiddenProcesses *monitoring.Int
	// unchanged: namespaces of the last poll whose counters had not moved
	// since their last read, so that read was used again.
	unchanged *monitoring.Int
	// failed counts namespace reads that failed (other than the agent's
	// own, whose failure fails the poll).
	failed *monitoring.Uint
}

func newNSMetrics(reg *monitoring.Registry) *nsMetrics {
	r := reg.GetOrCreateRegistry("netns")
	return &nsMetrics{
		namespaces:      monitoring.NewInt(r, "namespaces"),
		denied:          monitoring.NewInt(r, "denied"),
		hiddenProcesses: monitoring.NewInt(r, "hidden_processes"),
		unchanged:       monitoring.NewInt(r, "unchanged"),
		failed:          monitoring.NewUint(r, "failed"),
	}
}

// nsSource is a Source that reads every network namespace the Finder
// lists, each through its reader, and marks each socket with its
// namespace's inode.
type nsSource struct {
	r      nsReader
	finder *netns.Finder
	list   []netns.Namespace
	live   map[uint64]struct{}
	// anoms sums the readers' anomalies over the last poll.
	anoms   int
	logger  *logp.Logger
	metrics *nsMetrics
	// warned: the one line saying what the agent cannot read was logged.
	warned bool
	closed bool

	// reuse keeps each namespace's last read: used again while its
	// counters do not move (other namespaces', and the agent's own with
	// reuseOwn), and compared with the next read, which when it lists the
	// same sockets in the same order makes the namespace unchanged too.
	// Not with tcp_info, whose figures change without the counters, and
	// which point into the reader's buffers.
	reuse    bool
	reuseOwn bool // the agent's own namespace too (Options.ReuseOwn)
	cache    map[uint64]*nsRead
	counters netns.CounterReader
	procPath string
	// threadNet is the net directory of the reading thread's namespace.
	threadNet string
	// fullEvery bounds how long a namespace's read is used again: the
	// counters miss a few changes (see netns.Counters).
	fullEvery time.Duration
	unchanged int
	// same says the last poll used every namespace's last read again,
	// the namespaces of the poll before, in its order (lastList).
	same     bool
	lastList []uint64
}

// nsRead is a namespace's last full read.
type nsRead struct {
	counters netns.Counters
	// countersOK: counters were read with the sockets; a read without
	// them is kept only to tell whether the next read lists the same.
	countersOK bool
	sockets    []model.Socket
	// until is when the read is no longer used, counters or not.
	until time.Time
}

// fullReadEvery is how often a namespace whose counters stay still is read
// in full all the same. Each namespace's first deadline is spread over it,
// so that the full reads do not fall on one poll.
const fullReadEvery = 5 * time.Minute

func newNSSource(r nsReader, opts Options, m *nsMetrics) (*nsSource, error) {
	fopts := netns.Options{ProcPath: opts.ProcPath, OwnOnly: !opts.AllNamespaces, NamedPath: opts.NamedNetnsPath}
	if fopts.NamedPath == "" {
		fopts.NamedPath = "/run/netns"
	}
	f, err := netns.New(fopts)
	if err != nil {
		return nil, err
	}
	return &nsSource{r: r, finder: f, live: map[uint64]struct{}{}, logger: opts.Logger, metrics: m,
		reuse: !opts.TCPInfo, reuseOwn: opts.ReuseOwn, cache: map[uint64]*nsRead{}, procPath: opts.ProcPath, threadNet: opts.ProcPath + "/thread-self/net", fullEvery: fullReadEvery}, nil
}

// Name implements Source.
func (s *nsSource) Name() string { return s.r.name() }

// Unchanged implements unchangedReporter.
func (s *nsSource) Unchanged() bool { return s.same }

// forget implements forgetter.
func (s *nsSource) forget() {
	s.cache = map[uint64]*nsRead{}
	s.same, s.lastList = false, nil
}

// Anomalies implements anomalous.
func (s *nsSource) Anomalies() int { return s.anoms }

// Close implements Source.
func (s *nsSource) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.r.close()
	if ferr := s.finder.Close(); err == nil {
		err = ferr
	}
	return err
}

// Sockets implements Source: the agent's own namespace first, then every
// other one. A failure to read the agent's namespace fails the poll, as it
// would without namespaces; another namespace that cannot be read is left
// out, counted, and named once in the log.
func (s *nsSource) Sockets(ctx context.Context, dst []model.Socket) ([]model.Socket, error) {
	if s.closed {
		return dst, fmt.Errorf("%s source closed", s.r.name())
	}
	s.anoms, s.unchanged, s.same = 0, 0, false
	now := time.Now()
	list, missed, lerr := s.finder.List(s.list[:0])
	s.list = list
	var (
		ownErr         error
		read, denied   int
		firstProblem   error
		problemNS      netns.Namespace
		failedThisPoll int
	)
	err := s.finder.Each(ctx, list, netns.Visit{
		Enter: s.r.enter,
		Read: func(ns netns.Namespace) error {
			var err error
			dst, err = s.read(ctx, ns, now, dst)
			return err
		},
		Done: func(ns netns.Namespace, o netns.Outcome, err error) {
			if ns.Own {
				if err != nil {
					ownErr = err
				} else {
					read++
				}
				return
			}
			switch o {
			case netns.Read:
				read++
				return
			case netns.Vanished:
				return
			case netns.Denied:
				denied++
			default:
				failedThisPoll++
			}
			if firstProblem == nil {
				firstProblem, problemNS = err, ns
			}
		},
	})
	s.same = err == nil && ownErr == nil && lerr == nil && s.unchanged == len(list) && len(list) == len(s.lastList)
	for i := 0; s.same && i < len(list); i++ {
		s.same = list[i].Inode == s.lastList[i]
	}
	s.lastList = s.lastList[:0]
	for _, ns := range list {
		s.lastList = append(s.lastList, ns.Inode)
	}
	s.metrics.namespaces.Set(int64(read))
	s.metrics.unchanged.Set(int64(s.unchanged))
	s.metrics.denied.Set(int64(denied))
	s.metrics.hiddenProcesses.Set(int64(missed.Processes))
	s.metrics.failed.Add(uint64(failedThisPoll))
	if err == nil || errors.Is(err, netns.ErrStranded) {
		s.prune(list)
	}
	switch {
	case ownErr != nil:
		return dst, ownErr
	case err != nil && !errors.Is(err, netns.ErrStranded):
		return dst, err
	}
	if !s.warned && (lerr != nil || err != nil || missed.Processes > 0 || firstProblem != nil) {
		s.warned = true
		msg := s.explain(lerr, err, missed, len(list), read, denied, failedThisPoll, firstProblem, problemNS)
		if lerr == nil && err == nil && firstProblem == nil {
			// Only processes whose namespace link is unreadable: their
			// namespaces are most likely found through other processes
			// (root is refused some, e.g. a sandbox's init).
			s.logger.Info(msg)
		} else {
			s.logger.Warn(msg)
		}
	}
	return dst, nil
}

// read appends one namespace's sockets to dst: read by the reader, or, for
// a namespace other than the agent's whose counters have not moved since
// its last read, that read again.
func (s *nsSource) read(ctx context.Context, ns netns.Namespace, now time.Time, dst []model.Socket) ([]model.Socket, error) {
	var (
		counters netns.Counters
		cerr     error = errNoReuse
	)
	if s.reuse && (!ns.Own || s.reuseOwn) && !isFullRead(ctx) {
		// Read before the sockets: a change between the two shows as
		// moved counters at the next poll. The agent's own namespace is
		// read on one of its threads, never entered.
		dir := s.threadNet
		if !ns.Own && !s.r.enter(ns) {
			dir = s.procPath + "/" + strconv.Itoa(ns.PID) + "/net"
		}
		counters, cerr = s.counters.Read(dir)
		if last := s.cache[ns.Inode]; cerr == nil && last != nil && last.countersOK && last.counters == counters && now.Before(last.until) {
			s.unchanged++
			return append(dst, last.sockets...), nil
		}
	}
	n := len(dst)
	out, err := s.r.read(ctx, ns, dst)
	s.anoms += s.r.anomalies()
	if err != nil && !ns.Own {
		// A namespace read halfway is left out whole.
		delete(s.cache, ns.Inode)
		return out[:n], err
	}
	for i := n; i < len(out); i++ {
		out[i].NetNS = ns.Inode
	}
	if err == nil && s.reuse {
		last := s.cache[ns.Inode]
		same := last != nil && slices.Equal(last.sockets, out[n:])
		if same {
			// Read from the kernel, and the same as the last read: the
			// namespace is unchanged all the same.
			s.unchanged++
		}
		if last == nil {
			// The first deadline anywhere in one period, by inode: hashed,
			// since inodes are close together (the kernel hands them out
			// in order from one number).
			first := firstDeadline(ns.Inode, s.fullEvery)
			if ns.Own {
				first = s.fullEvery // one namespace: nothing to spread
			}
			last = &nsRead{until: now.Add(first)}
			s.cache[ns.Inode] = last
		} else if !now.Before(last.until) {
			last.until = now.Add(s.fullEvery)
		}
		last.counters, last.countersOK = counters, cerr == nil
		if !same {
			last.sockets = append(last.sockets[:0], out[n:]...)
		}
	} else {
		delete(s.cache, ns.Inode)
	}
	return out, err
}

// fullReadKey marks a context whose reads reuse nothing (FullRead).
type fullReadKey struct{}

// FullRead returns a context under which a source reads every namespace
// from the kernel, reusing no earlier read: for a caller that knows it
// missed changes (the event capture lost records).
func FullRead(ctx context.Context) context.Context {
	return context.WithValue(ctx, fullReadKey{}, true)
}

func isFullRead(ctx context.Context) bool {
	v, _ := ctx.Value(fullReadKey{}).(bool)
	return v
}

// firstDeadline spreads namespaces' first full reads over one period.
func firstDeadline(inode uint64, period time.Duration) time.Duration {
	h := inode * 0x9e3779b97f4a7c15 // Fibonacci hashing: near inodes land far apart
	return time.Duration((h >> 11) % uint64(period))
}

// errNoReuse marks a read whose counters were not read.
var errNoReuse = errors.New("not reused")

// explain is the one log line that says which namespaces a poll could not
// read and why.
func (s *nsSource) explain(lerr, err error, missed netns.Missed, found, read, denied, failed int, first error, ns netns.Namespace) string {
	var b strings.Builder
	fmt.Fprintf(&b, "network namespaces: the %s source read %d of the %d found; sockets of namespaces it cannot see or enter are not reported:", s.r.name(), read, found)
	if lerr != nil {
		fmt.Fprintf(&b, " %v (only the agent's own namespace is read);", lerr)
	}
	if missed.Processes > 0 {
		fmt.Fprintf(&b, " %d processes' namespace links cannot be read (permission denied on /proc/PID/ns/net; other users' processes need CAP_SYS_PTRACE);", missed.Processes)
	}
	if denied > 0 {
		fmt.Fprintf(&b, " %d namespaces may not be entered (setns needs CAP_SYS_ADMIN; socket_source: procfs reads namespaces of readable processes without it);", denied)
	}
	if failed > 0 {
		fmt.Fprintf(&b, " %d namespace reads failed;", failed)
	}
	if first != nil {
		fmt.Fprintf(&b, " first: namespace %d: %v;", ns.Inode, first)
	}
	if err != nil {
		fmt.Fprintf(&b, " %v;", err)
	}
	return strings.TrimSuffix(b.String(), ";") + " (logged once; counted in socket_source.netns)"
}

// prune lets the reader release what it keeps for namespaces that are
// gone.
func (s *nsSource) prune(list []netns.Namespace) {
	clear(s.live)
	for _, ns := range list {
		s.live[ns.Inode] = struct{}{}
	}
	s.r.prune(s.live)
	for ino := range s.cache {
		if _, ok := s.live[ino]; !ok {
			delete(s.cache, ino)
		}
	}
}
