package beater

import (
	"fmt"

	"github.com/elastic/elastic-agent-libs/logp"

	"github.com/connbeat/connbeat/config"
	"github.com/connbeat/connbeat/connections"
	"github.com/connbeat/connbeat/connections/netlink"
)

// selectSource opens the socket source cfg.SocketSource names. auto uses
// netlink and, when the kernel or a seccomp policy refuses it, falls back
// to procfs with one log line saying why; netlink and procfs force one.
func selectSource(cfg config.Config, logger *logp.Logger) (connections.Source, error) {
	if cfg.SocketSource == config.SourceProcFS {
		return openProcFS(cfg)
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
