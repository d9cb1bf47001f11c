package conntrack

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/elastic/elastic-agent-libs/logp"
)

// sysctl is one net.netfilter setting the input wants on.
type sysctl struct {
	name string // under net/netfilter
	// off says what events lack while it is 0.
	off string
}

// wantedSysctls are turned on at start where connbeat may. They exist
// once the kernel's conntrack is loaded, which subscribing to its events
// does; each is per network namespace.
var wantedSysctls = []sysctl{
	// Kernels >= 5.19 default to 2: events only while a listener exists,
	// which connbeat is. 0 turns events off altogether.
	{"nf_conntrack_events", "the kernel sends no conntrack events at all"},
	// Counters and start times are attached to an entry when it is
	// created: entries older than the change never get them.
	{"nf_conntrack_acct", "DESTROY events carry no byte and packet counters"},
	{"nf_conntrack_timestamp", "events carry no start and end times"},
}

// setupSysctls turns on each wanted setting found at 0 when set is true
// (logging the old and new value), and otherwise, or where it may not
// write (no CAP_NET_ADMIN in the namespace, a read-only /proc/sys as under
// systemd's ProtectKernelTunables), says once what events will lack.
func setupSysctls(root string, set bool, write func(path, value string) error, log *logp.Logger) {
	for _, s := range wantedSysctls {
		key := "net.netfilter." + s.name
		path := filepath.Join(root, "net", "netfilter", s.name)
		b, err := os.ReadFile(path)
		if err != nil {
			log.Warnf("conntrack: cannot read %s (%v): %s if it is 0", key, err, s.off)
			continue
		}
		old := strings.TrimSpace(string(b))
		if old != "0" {
			log.Debugf("conntrack: %s = %s", key, old)
			continue
		}
		if !set {
			log.Warnf("conntrack: %s = 0: %s (set it to 1, or let connbeat with connbeat.conntrack.set_sysctls: true)", key, s.off)
			continue
		}
		if err := write(path, "1"); err != nil {
			log.Warnf("conntrack: %s = 0 and connbeat cannot set it (%v): %s; set it to 1 in /etc/sysctl.d", key, err, s.off)
			continue
		}
		log.Infof("conntrack: %s: 0 -> 1", key)
	}
}

func writeSysctl(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(value); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}
