package capture

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// The programs are capture.bpf.c, compiled with CO-RE relocations into
// capture_bpfel.o and capture_bpfeb.o (one object a byte order, so that
// the package builds for every GOARCH), which the generated Go embeds.
// `make generate` runs this with Debian's clang 14.
//
//go:generate go tool bpf2go -cflags "-Wall -Werror" capture capture.bpf.c

// Counter indexes of the connbeat_counters map (enum in capture.bpf.c).
const (
	cntLost = iota
	cntConnFail
	cntConnInserted
	cntConnDeleted
	cntUDPFail
	cntUDPInserted
	cntListenFail
	cntUntrackedClose
	cntMax
)

// programs are the loaded programs, their maps and the links that attach
// them.
type programs struct {
	objs  captureObjects
	links []link.Link
}

// load loads the programs with maps sized by sizes and attaches them: the
// TCP tracepoint host-wide, the UDP hooks to the cgroup2 root at cgroupDir.
func load(kernel *btf.Spec, sizes Sizes, cgroupDir string) (*programs, error) {
	spec, err := loadCapture()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded capture programs: %w", err)
	}
	spec.Maps[captureMapConnbeatConns].MaxEntries = sizes.Connections
	spec.Maps[captureMapConnbeatListeners].MaxEntries = sizes.Listeners
	spec.Maps[captureMapConnbeatUdp].MaxEntries = sizes.UDPPairs
	spec.Maps[captureMapConnbeatEvents].MaxEntries = sizes.RingBuffer
	p := &programs{}
	err = spec.LoadAndAssign(&p.objs, &ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: kernel},
	})
	if err != nil {
		return nil, fmt.Errorf("loading the capture programs: %w", err)
	}
	tp, err := link.AttachTracing(link.TracingOptions{Program: p.objs.ConnbeatState, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		p.close()
		return nil, fmt.Errorf("attaching tp_btf/inet_sock_set_state: %w", err)
	}
	p.links = append(p.links, tp)
	for _, hook := range []struct {
		prog   *ebpf.Program
		attach ebpf.AttachType
		name   string
	}{
		{p.objs.ConnbeatSendmsg4, ebpf.AttachCGroupUDP4Sendmsg, "sendmsg4"},
		{p.objs.ConnbeatSendmsg6, ebpf.AttachCGroupUDP6Sendmsg, "sendmsg6"},
		{p.objs.ConnbeatRecvmsg4, ebpf.AttachCGroupUDP4Recvmsg, "recvmsg4"},
		{p.objs.ConnbeatRecvmsg6, ebpf.AttachCGroupUDP6Recvmsg, "recvmsg6"},
		{p.objs.ConnbeatConnect4, ebpf.AttachCGroupInet4Connect, "connect4"},
		{p.objs.ConnbeatConnect6, ebpf.AttachCGroupInet6Connect, "connect6"},
	} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupDir, Attach: hook.attach, Program: hook.prog})
		if err != nil {
			p.close()
			return nil, fmt.Errorf("attaching cgroup/%s to %s: %w", hook.name, cgroupDir, err)
		}
		p.links = append(p.links, l)
	}
	return p, nil
}

func (p *programs) close() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	errs = append(errs, p.objs.Close())
	return errors.Join(errs...)
}

// counters sums the per-CPU counters.
func (p *programs) counters() ([cntMax]uint64, error) {
	var out [cntMax]uint64
	var perCPU []uint64
	for i := uint32(0); i < cntMax; i++ {
		if err := p.objs.ConnbeatCounters.Lookup(i, &perCPU); err != nil {
			return out, fmt.Errorf("reading capture counter %d: %w", i, err)
		}
		for _, v := range perCPU {
			out[i] += v
		}
	}
	return out, nil
}

// cgroup2Root finds the cgroup2 hierarchy's mount point: /sys/fs/cgroup on
// a pure v2 host, /sys/fs/cgroup/unified on a hybrid one; else the first
// cgroup2 mount in mountinfo.
func cgroup2Root(mountinfo string) (string, error) {
	for _, dir := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st unix.Statfs_t
		if unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return dir, nil
		}
	}
	data, err := os.ReadFile(mountinfo)
	if err != nil {
		return "", fmt.Errorf("no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified, and %w", err)
	}
	if dir, ok := parseCgroup2Mount(data); ok {
		return filepath.Clean(dir), nil
	}
	return "", errors.New("no cgroup2 hierarchy is mounted (the UDP hooks attach to its root)")
}

func isNotExist(err error) bool { return errors.Is(err, ebpf.ErrKeyNotExist) }
