package beater

import (
	"fmt"

	"github.com/elastic/elastic-agent-libs/logp"

	"github.com/connbeat/connbeat/config"
	"github.com/connbeat/connbeat/connections"
	"github.com/connbeat/connbeat/connections/bpfiter"
	"github.com/connbeat/connbeat/connections/netlink"
)

// selectSource opens the socket source cfg.SocketSource names. auto uses
// the bpf iterator where the agent may load it (and tcp_info is off, which
// only netlink reads), else netlink, else procfs, saying in one log line
// why each faster source was passed over; bpf, netlink and procfs force one.
func selectSource(cfg config.Config, logger *logp.Logger) (connections.Source, error) {
	switch cfg.SocketSource {
	case config.SourceProcFS:
		return openProcFS(cfg)
	case config.SourceBPF:
		src, err := bpfiter.Open()
		if err != nil {
			return nil, fmt.Errorf("opening socket source (socket_source: bpf): %w", err)
		}
		return src, nil
	}
	if cfg.SocketSource == config.SourceAuto && !cfg.TCPInfo {
		src, err := bpfiter.Open()
		if err == nil {
			return src, nil
		}
		if !connections.IsUnavailable(err) {
			return nil, fmt.Errorf("opening socket source: %w", err)
		}
		logger.Infof("%v: using netlink (about a quarter more CPU a poll); set socket_source: netlink to silence this", err)
	}
	src, err := netlink.Open(netlink.Options{TCPInfo: cfg.TCPInfo})
	switch {
	case err == nil:
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

func openProcFS(cfg config.Config) (connections.Source, error) {
	src, err := connections.NewProcFS(cfg.ProcPath)
	if err != nil {
		return nil, fmt.Errorf("opening socket source (procfs at %s): %w", cfg.ProcPath, err)
	}
	return src, nil
}
