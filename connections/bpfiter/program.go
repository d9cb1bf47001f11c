package bpfiter

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"

	"github.com/connbeat/connbeat/model"
)

// The programs are iter.bpf.c, compiled with CO-RE relocations into
// iter_bpfel.o and iter_bpfeb.o (bpf2go's default targets, one object a
// byte order, so that the package builds for every GOARCH as before),
// which the generated Go embeds: the running kernel's BTF places each
// field at load, no compiler is needed then. `make generate` runs this
// with Debian's clang 14.
//
//go:generate go tool bpf2go -cflags "-Wall -Werror" iter iter.bpf.c

// The record the programs write for every socket, in the machine's byte
// order except the remote port and the addresses, which are in network
// order as the kernel keeps them (struct record in iter.bpf.c):
//
//	0  u16 family (AF_INET, AF_INET6)
//	2  u8  state (sk_state: TIME_WAIT and NEW_SYN_RECV as the kernel has them)
//	3  u8  substate of a TIME_WAIT socket (tw_substate), else 0
//	4  u16 local port, host order (skc_num)
//	6  u16 remote port, network order (skc_dport)
//	8  u32 uid the iterator reports (0 for TIME_WAIT)
//	12 u8  transport, model.Transport's numbers (0 tcp, 1 udp)
//	13 [3] zero
//	16 u64 inode of the socket's file, 0 when no file holds it
//	24 [16] local address (IPv4: the first 4 bytes)
//	40 [16] remote address (IPv4: the first 4 bytes)
const (
	recLen       = 56
	recFamily    = 0
	recState     = 2
	recSubstate  = 3
	recLPort     = 4
	recRPort     = 6
	recUID       = 8
	recTransport = 12
	recInode     = 16
	recLocal     = 24
	recRemote    = 40
)

const (
	afINET  = 2
	afINET6 = 10
	// Kernel socket states the program reports as they are: neither kind
	// of socket has a struct socket behind it.
	stateTimeWait   = 6
	stateNewSynRecv = 12
)

// cacheSlots is the default size of the program's inode cache (see struct
// slot in iter.bpf.c), 16 bytes a slot.
const cacheSlots = 1 << 17

// iters are the attached iterators of a source, nil for a transport it
// does not list.
type iters struct {
	tcp, udp *link.Iter
}

func (it *iters) close() error {
	var err error
	for _, l := range []*link.Iter{it.tcp, it.udp} {
		if l != nil {
			if cerr := l.Close(); err == nil {
				err = cerr
			}
		}
	}
	it.tcp, it.udp = nil, nil
	return err
}

// attach loads the programs of the transports asked for, the tcp one with
// an inode cache of slots entries (a power of two), and attaches each to
// its iterator; a transport left out loads nothing. kernel is the BTF the
// programs' CO-RE relocations are resolved against: the running kernel's.
func attach(kernel *btf.Spec, slots uint32, transports model.Transports) (iters, error) {
	var it iters
	if err := checkWordSize(kernel); err != nil {
		return it, err
	}
	spec, err := loadIter()
	if err != nil {
		return it, fmt.Errorf("reading the embedded iterator programs: %w", err)
	}
	opts := &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: kernel}}
	if transports.Has(model.TCP) {
		spec.Maps[iterMapConnbeatInodes].MaxEntries = slots
		if err := spec.Variables[iterVarSlotMask].Set(slots - 1); err != nil {
			return it, fmt.Errorf("setting the inode cache's size: %w", err)
		}
		// LoadAndAssign loads only what the struct names, and the maps
		// those programs use.
		var objs struct {
			Prog *ebpf.Program `ebpf:"connbeat_tcp"`
		}
		if it.tcp, err = load1(spec, &objs, &objs.Prog, opts, "tcp"); err != nil {
			return it, err
		}
	}
	if transports.Has(model.UDP) {
		var objs struct {
			Prog *ebpf.Program `ebpf:"connbeat_udp"`
		}
		if it.udp, err = load1(spec, &objs, &objs.Prog, opts, "udp"); err != nil {
			it.close()
			return it, err
		}
	}
	return it, nil
}

// load1 loads the one program objs names and attaches it to its iterator.
func load1(spec *ebpf.CollectionSpec, objs any, prog **ebpf.Program, opts *ebpf.CollectionOptions, name string) (*link.Iter, error) {
	if err := spec.LoadAndAssign(objs, opts); err != nil {
		return nil, fmt.Errorf("loading the %s iterator program: %w", name, err)
	}
	// The link holds the program from here on, the program its maps.
	defer (*prog).Close()
	iter, err := link.AttachIter(link.IterOptions{Program: *prog})
	if err != nil {
		return nil, fmt.Errorf("attaching the %s iterator: %w", name, err)
	}
	return iter, nil
}

// checkWordSize refuses a kernel whose pointers are not 8 bytes. The
// program reads a socket's struct socket pointer and its inode number (an
// unsigned long) with probe reads of 8 bytes, whose size CO-RE does not
// adjust and the verifier does not check.
func checkWordSize(kernel *btf.Spec) error {
	var sock *btf.Struct
	if err := kernel.TypeByName("sock", &sock); err != nil {
		return fmt.Errorf("kernel BTF: struct sock: %w", err)
	}
	for _, m := range sock.Members {
		if m.Name != "sk_socket" {
			continue
		}
		size, err := btf.Sizeof(m.Type)
		if err != nil {
			return fmt.Errorf("kernel BTF: sock.sk_socket: %w", err)
		}
		if size != 8 {
			return fmt.Errorf("kernel BTF: sock.sk_socket is %d bytes: the bpf source needs a 64-bit kernel", size)
		}
		return nil
	}
	return fmt.Errorf("kernel BTF: struct sock has no member sk_socket")
}
