package bpfiter

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
)

// The program is iter.bpf.c, compiled with CO-RE relocations into
// iter_bpfel.o and iter_bpfeb.o (bpf2go's default targets, one object a
// byte order, so that the package builds for every GOARCH as before),
// which the generated Go embeds: the running kernel's BTF places each
// field at load, no compiler is needed then. `make generate` runs this
// with Debian's clang 14.
//
//go:generate go tool bpf2go -cflags "-Wall -Werror" iter iter.bpf.c

// The record the program writes for every socket, in the machine's byte
// order except the remote port and the addresses, which are in network
// order as the kernel keeps them (struct record in iter.bpf.c):
//
//	0  u16 family (AF_INET, AF_INET6)
//	2  u8  state (sk_state: TIME_WAIT and NEW_SYN_RECV as the kernel has them)
//	3  u8  substate of a TIME_WAIT socket (tw_substate), else 0
//	4  u16 local port, host order (skc_num)
//	6  u16 remote port, network order (skc_dport)
//	8  u32 uid the iterator reports (0 for TIME_WAIT)
//	12 u32 zero
//	16 u64 inode of the socket's file, 0 when no file holds it
//	24 [16] local address (IPv4: the first 4 bytes)
//	40 [16] remote address (IPv4: the first 4 bytes)
const (
	recLen      = 56
	recFamily   = 0
	recState    = 2
	recSubstate = 3
	recLPort    = 4
	recRPort    = 6
	recUID      = 8
	recInode    = 16
	recLocal    = 24
	recRemote   = 40
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

// attach loads the program, with an inode cache of slots entries (a power
// of two), and attaches it to the tcp iterator. kernel is the BTF the
// program's CO-RE relocations are resolved against: the running kernel's.
func attach(kernel *btf.Spec, slots uint32) (*link.Iter, error) {
	if err := checkWordSize(kernel); err != nil {
		return nil, err
	}
	spec, err := loadIter()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded tcp iterator program: %w", err)
	}
	spec.Maps[iterMapConnbeatInodes].MaxEntries = slots
	if err := spec.Variables[iterVarSlotMask].Set(slots - 1); err != nil {
		return nil, fmt.Errorf("setting the inode cache's size: %w", err)
	}
	var objs iterObjects
	err = spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{
		Programs: ebpf.ProgramOptions{KernelTypes: kernel},
	})
	if err != nil {
		return nil, fmt.Errorf("loading the tcp iterator program: %w", err)
	}
	// The link holds the program from here on, the program its maps.
	defer objs.Close()
	iter, err := link.AttachIter(link.IterOptions{Program: objs.ConnbeatTcp})
	if err != nil {
		return nil, fmt.Errorf("attaching the tcp iterator: %w", err)
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
