package beater

import (
	"fmt"

	"github.com/elastic/elastic-agent-libs/logp"

	"github.com/connbeat/connbeat/config"
	"github.com/connbeat/connbeat/connections"
	"github.com/connbeat/connbeat/connections/bpfiter"
	"github.com/connbeat/connbeat/connections/netlink"
)

// selectSource opens the socket source cfg.SocketSource names. auto reads
// through netlink, moving to the bpf source on hosts with many sockets
// where the agent may load it (autoSource), and falls back to procfs with
// one log line when the kernel or a seccomp policy refuses netlink; with
// tcp_info, which only netlink reads, it stays on netlink. bpf, netlink
// and procfs force one.
func selectSource(cfg config.Config, logger *logp.Logger) (connections.Source, error) {
	switch cfg.SocketSource {
	case config.SourceProcFS:
		return openProcFS(cfg)
	case config.SourceBPF:
		src, err := openBPF()
		if err != nil {
			return nil, fmt.Errorf("opening socket source (socket_source: bpf): %w", err)
		}
		return src, nil
	}
	src, err := netlink.Open(netlink.Options{TCPInfo: cfg.TCPInfo})
	switch {
	case err == nil:
		if cfg.SocketSource == config.SourceAuto && !cfg.TCPInfo {
			return newAutoSource(src, openBPF, logger), nil
		}
		return src, nil
	case cfg.SocketSource == config.SourceNetlink:
		return nil, fmt.Errorf("opening socket source (socket_source: netlink): %w", err)
	case !connections.IsUnavailable(err):
		return nil, fmt.Errorf("opening socket source: %w", err)
	}
	lost := ""
	if cfg.TCPInfo {
		lost = "; events carry no tcp_info"
	}
	logger.Warnf("%v: falling back to procfs (slower polls%s); set socket_source: procfs to silence this", err, lost)
	return openProcFS(cfg)
}

// openBPF opens the bpf source as a connections.Source: nil, not a nil
// *bpfiter.Source, when it fails.
func openBPF() (connections.Source, error) {
	src, err := bpfiter.Open()
	if err != nil {
		return nil, err
	}
	return src, nil
}

func openProcFS(cfg config.Config) (connections.Source, error) {
	src, err := connections.NewProcFS(cfg.ProcPath)
	if err != nil {
		return nil, fmt.Errorf("opening socket source (procfs at %s): %w", cfg.ProcPath, err)
	}
	return src, nil
}
