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
	cntCloseRecovered
	cntMax
)

// programs are the loaded programs, their maps and the links that attach
// them.
type programs struct {
	maps  captureMaps
	progs []*ebpf.Program
	links []link.Link
	// udp is nil when the UDP hooks run, else why they do not.
	udp error
}

// tcpObjects are the programs and maps of a capture of TCP only.
type tcpObjects struct {
	captureMaps
	ConnbeatState   *ebpf.Program `ebpf:"connbeat_state"`
	ConnbeatDestroy *ebpf.Program `ebpf:"connbeat_destroy"`
}

// load loads the programs with maps sized by sizes and attaches them: the
// TCP tracepoint host-wide, the UDP hooks to the cgroup2 root at cgroupDir.
// Where the UDP hooks cannot load for want of a privilege (cgroup
// sock_addr programs need CAP_NET_ADMIN) or a cgroup2 hierarchy
// (cgroupDir empty), the TCP program runs alone and programs.udp says why.
func load(kernel *btf.Spec, sizes Sizes, cgroupDir string) (*programs, error) {
	spec, err := loadCapture()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded capture programs: %w", err)
	}
	spec.Maps[captureMapConnbeatConns].MaxEntries = sizes.Connections
	spec.Maps[captureMapConnbeatListeners].MaxEntries = sizes.Listeners
	spec.Maps[captureMapConnbeatUdp].MaxEntries = sizes.UDPPairs
	spec.Maps[captureMapConnbeatEvents].MaxEntries = sizes.RingBuffer
	opts := &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: kernel}}
	p := &programs{}
	var all captureObjects
	if cgroupDir == "" {
		p.udp = errors.New("no cgroup2 hierarchy is mounted")
	} else if err := spec.LoadAndAssign(&all, opts); err == nil {
		p.maps = all.captureMaps
		p.progs = []*ebpf.Program{all.ConnbeatState, all.ConnbeatDestroy, all.ConnbeatSendmsg4, all.ConnbeatSendmsg6,
			all.ConnbeatRecvmsg4, all.ConnbeatRecvmsg6, all.ConnbeatConnect4, all.ConnbeatConnect6}
	} else if denied(err) {
		p.udp = fmt.Errorf("loading the UDP hooks: %w (cgroup programs need CAP_NET_ADMIN)", err)
	} else {
		return nil, fmt.Errorf("loading the capture programs: %w", err)
	}
	if p.udp != nil {
		var tcp tcpObjects
		if err := spec.LoadAndAssign(&tcp, opts); err != nil {
			return nil, fmt.Errorf("loading the capture programs: %w", err)
		}
		p.maps = tcp.captureMaps
		p.progs = []*ebpf.Program{tcp.ConnbeatState, tcp.ConnbeatDestroy}
	}
	for i, name := range []string{"inet_sock_set_state", "tcp_destroy_sock"} {
		tp, err := link.AttachTracing(link.TracingOptions{Program: p.progs[i], AttachType: ebpf.AttachTraceRawTp})
		if err != nil {
			p.close()
			return nil, fmt.Errorf("attaching tp_btf/%s: %w", name, err)
		}
		p.links = append(p.links, tp)
	}
	if p.udp != nil {
		return p, nil
	}
	for i, hook := range []struct {
		attach ebpf.AttachType
		name   string
	}{
		{ebpf.AttachCGroupUDP4Sendmsg, "sendmsg4"},
		{ebpf.AttachCGroupUDP6Sendmsg, "sendmsg6"},
		{ebpf.AttachCGroupUDP4Recvmsg, "recvmsg4"},
		{ebpf.AttachCGroupUDP6Recvmsg, "recvmsg6"},
		{ebpf.AttachCGroupInet4Connect, "connect4"},
		{ebpf.AttachCGroupInet6Connect, "connect6"},
	} {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupDir, Attach: hook.attach, Program: p.progs[i+2]})
		if err != nil {
			p.close()
			return nil, fmt.Errorf("attaching cgroup/%s to %s: %w", hook.name, cgroupDir, err)
		}
		p.links = append(p.links, l)
	}
	return p, nil
}

// denied reports a refusal for want of a privilege (not the verifier's,
// which is EACCES too).
func denied(err error) bool {
	var verr *ebpf.VerifierError
	return errors.Is(err, os.ErrPermission) && !errors.As(err, &verr)
}

func (p *programs) close() error {
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	for _, prog := range p.progs {
		errs = append(errs, prog.Close())
	}
	p.progs = nil
	errs = append(errs, p.maps.Close())
	return errors.Join(errs...)
}

// skipped sums the runs of the tracing programs the kernel skipped for
// recursion.
func (p *programs) skipped() (uint64, error) {
	var n uint64
	for _, prog := range p.progs[:2] {
		st, err := prog.Stats()
		if err != nil {
			return n, fmt.Errorf("reading the capture programs' stats: %w", err)
		}
		n += st.RecursionMisses
	}
	return n, nil
}

// counters sums the per-CPU counters.
func (p *programs) counters() ([cntMax]uint64, error) {
	var out [cntMax]uint64
	var perCPU []uint64
	for i := uint32(0); i < cntMax; i++ {
		if err := p.maps.ConnbeatCounters.Lookup(i, &perCPU); err != nil {
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
	return "", errors.New("no cgroup2 hierarchy is mounted")
}

func isNotExist(err error) bool { return errors.Is(err, ebpf.ErrKeyNotExist) }
