package connections

import (
	"context"

	"github.com/elastic/elastic-agent-libs/logp"
	"github.com/elastic/elastic-agent-libs/monitoring"

	"github.com/connbeat/connbeat/model"
)

// Where socket_source: auto moves between netlink and the bpf source
// (make bench measures both sides of the crossover). The bpf iterator
// locks every socket it visits, a fixed cost that netlink's dump does not
// pay, while netlink fills a message per socket, which grows dearer as
// sockets outgrow the caches. The gap between the two thresholds keeps a
// host near one of them from switching back and forth.
const (
	bpfAbove     = 10000
	netlinkBelow = 5000
)

// autoSource is socket_source: auto without tcp_info: netlink, and the bpf
// source while a poll sees bpfAbove sockets or more, when the agent may
// load it. The bpf source is opened on the first poll that asks for it,
// so that small hosts never load a program; a host where it cannot be
// opened, or where it failed, stays on netlink with one log line. A switch
// takes effect from the next poll.
type autoSource struct {
	netlink Source
	bpf     Source // nil until opened
	openBPF func() (Source, error)
	useBPF  bool
	// noBPF says the bpf source could not be opened or failed: it is not
	// tried again.
	noBPF    bool
	up, down int
	// served and servedBefore are the sources of the last two polls.
	served, servedBefore Source
	logger               *logp.Logger
	switches             *monitoring.Uint
}

func newAutoSource(nl Source, openBPF func() (Source, error), logger *logp.Logger, switches *monitoring.Uint) *autoSource {
	return &autoSource{netlink: nl, openBPF: openBPF, up: bpfAbove, down: netlinkBelow, logger: logger, switches: switches}
}

// Name implements Source: the source the next poll reads.
func (a *autoSource) Name() string {
	if a.useBPF {
		return a.bpf.Name()
	}
	return a.netlink.Name()
}

// Unchanged implements unchangedReporter: the last two polls read one
// source, which listed the same sockets.
func (a *autoSource) Unchanged() bool {
	return a.served != nil && a.served == a.servedBefore && Unchanged(a.served)
}

// Sockets implements Source.
func (a *autoSource) Sockets(ctx context.Context, dst []model.Socket) ([]model.Socket, error) {
	start := len(dst)
	a.servedBefore, a.served = a.served, nil
	if a.useBPF {
		out, err := a.bpf.Sockets(ctx, dst)
		if err == nil {
			a.served = a.bpf
			if n := len(out) - start; n < a.down {
				a.useBPF = false
				a.switches.Inc()
				forget(a.bpf)
				a.logger.Infof("socket source: netlink from the next poll (%d sockets, fewer than %d: netlink's poll costs less CPU)", n, a.down)
			}
			return out, nil
		}
		if ctx.Err() != nil {
			return out, err
		}
		a.logger.Warnf("socket source bpf failed (%v): reading through netlink from now on", err)
		a.bpf.Close()
		a.bpf, a.useBPF, a.noBPF = nil, false, true
		a.switches.Inc()
		dst = dst[:start]
	}
	out, err := a.netlink.Sockets(ctx, dst)
	if err != nil {
		return out, err
	}
	a.served = a.netlink
	if n := len(out) - start; n >= a.up && !a.noBPF {
		if a.bpf == nil {
			src, err := a.openBPF()
			if err != nil {
				a.noBPF = true
				a.logger.Infof("%v: staying on netlink although %d sockets would poll cheaper through bpf; set socket_source: netlink to silence this", err, n)
				return out, nil
			}
			a.bpf = src
		}
		a.useBPF = true
		a.switches.Inc()
		forget(a.netlink)
		a.logger.Infof("socket source: bpf from the next poll (%d sockets, %d or more: its poll costs less CPU than netlink's)", n, a.up)
	}
	return out, nil
}

// Close implements Source.
func (a *autoSource) Close() error {
	err := a.netlink.Close()
	if a.bpf != nil {
		if berr := a.bpf.Close(); err == nil {
			err = berr
		}
	}
	return err
}
