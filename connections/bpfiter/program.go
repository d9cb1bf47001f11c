package bpfiter

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// The record the program writes for every socket, in the machine's byte
// order except the remote port and the addresses, which are in network
// order as the kernel keeps them:
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
	// Kernel socket states the program treats apart: neither kind of
	// socket has a struct socket behind it.
	stateTimeWait   = 6
	stateNewSynRecv = 12
)

// The context of a tcp iterator program, struct bpf_iter__tcp: pointers to
// the iterator's meta (whose first member is the seq_file to write to) and
// to the socket, then the socket's uid, each in an 8-byte slot.
const (
	ctxMeta = 0
	ctxSock = 8
	ctxUID  = 16
)

// The inode cache: an array map of cacheSlots 16-byte slots, each the key
// (socket cookie | kernel state << 56) and the inode read for it. Reading a
// socket's inode takes two dependent loads from memory the walk does not
// touch otherwise (the socket's struct socket pointer, then the inode),
// about a third of the program's cost at 80,000 sockets; one slot read
// replaces both for a socket seen before.
//
// A slot is only trusted for a state in which the socket's file can go away
// solely through close(), and close() changes that state under the socket
// lock, which the iterator holds while the program runs: ESTABLISHED
// (-> FIN_WAIT1 or CLOSE), SYN_SENT (-> CLOSE), CLOSE_WAIT (-> LAST_ACK),
// LISTEN (-> CLOSE). A socket gains its file (accept) only while its inode
// is 0, and 0 is never cached. Cookies are never reused, so a slot left by a
// closed socket, or taken over by another one, just misses.
const (
	cacheSlots   = 1 << 17
	slotKey      = 0
	slotInode    = 8
	slotSize     = 16
	stackKey     = -recLen - 8  // u32 array index, for the lookup
	stackSlotPtr = -recLen - 16 // the slot found, or 0
)

// newCache creates the inode cache map for a program.
func newCache(slots uint32) (*ebpf.Map, error) {
	return ebpf.NewMap(&ebpf.MapSpec{
		Name:       "connbeat_inodes",
		Type:       ebpf.Array,
		KeySize:    4,
		ValueSize:  slotSize,
		MaxEntries: slots,
	})
}

// program assembles the iterator program for a kernel's layout. It reads
// the socket's addresses, ports and state directly (BTF-checked loads of
// sock_common), takes the inode from the cache (slots entries, a power of
// two) or reads it through two bpf_probe_read_kernel calls (the socket's
// struct socket, then the inode beside it), and writes one record with
// bpf_seq_write. Registers: r6 the context, r7 the socket, r8 the state, r9
// the cache key; r1-r5 are helper arguments, clobbered by each call.
func program(l layout, cache *ebpf.Map, slots uint32) (asm.Instructions, error) {
	const rec = -recLen // the record on the stack, from the frame pointer
	loadCache := asm.LoadMapPtr(asm.R1, 0)
	if err := loadCache.AssociateMap(cache); err != nil {
		return nil, err
	}
	st := func(off int16, src asm.Register, size asm.Size) asm.Instruction {
		return asm.StoreMem(asm.RFP, rec+off, src, size)
	}
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, ctxSock, asm.DWord),
		// The iterator calls the program once more, with no socket, at
		// the end of the walk.
		asm.JEq.Imm(asm.R7, 0, "exit"),
		asm.Mov.Imm(asm.R1, 0),
	}
	for off := int16(0); off < recLen; off += 8 {
		insns = append(insns, st(off, asm.R1, asm.DWord))
	}
	insns = append(insns,
		asm.LoadMem(asm.R1, asm.R7, l.family, asm.Half),
		st(recFamily, asm.R1, asm.Half),
		asm.LoadMem(asm.R8, asm.R7, l.state, asm.Byte),
		st(recState, asm.R8, asm.Byte),
		asm.LoadMem(asm.R1, asm.R7, l.num, asm.Half),
		st(recLPort, asm.R1, asm.Half),
		asm.LoadMem(asm.R1, asm.R7, l.dport, asm.Half),
		st(recRPort, asm.R1, asm.Half),
		asm.LoadMem(asm.R1, asm.R6, ctxUID, asm.DWord),
		st(recUID, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.R7, l.family, asm.Half),
	)
	if l.v6Daddr >= 0 {
		insns = append(insns, asm.JEq.Imm(asm.R1, afINET6, "v6"))
	}
	insns = append(insns,
		asm.LoadMem(asm.R1, asm.R7, l.rcvSaddr, asm.Word),
		st(recLocal, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.R7, l.daddr, asm.Word),
		st(recRemote, asm.R1, asm.Word),
		asm.Ja.Label("owner"),
	)
	if l.v6Daddr >= 0 {
		for i := int16(0); i < 16; i += 4 {
			load := asm.LoadMem(asm.R1, asm.R7, l.v6RcvSaddr+i, asm.Word)
			if i == 0 {
				load = load.WithSymbol("v6")
			}
			insns = append(insns,
				load,
				st(recLocal+i, asm.R1, asm.Word),
				asm.LoadMem(asm.R1, asm.R7, l.v6Daddr+i, asm.Word),
				st(recRemote+i, asm.R1, asm.Word),
			)
		}
	}
	insns = append(insns,
		// A TIME_WAIT socket is an inet_timewait_sock: no file, but the
		// state it stands for (FIN_WAIT2 or TIME_WAIT) is its substate.
		asm.JNE.Imm(asm.R8, stateTimeWait, "full").WithSymbol("owner"),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, rec+recSubstate),
		asm.Mov.Imm(asm.R2, 1),
		asm.Mov.Reg(asm.R3, asm.R7),
		asm.Add.Imm(asm.R3, l.twSubstate),
		asm.FnProbeReadKernel.Call(),
		asm.Ja.Label("write"),
		// A pending connection (request_sock) has no file either.
		asm.JEq.Imm(asm.R8, stateNewSynRecv, "write").WithSymbol("full"),
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.RFP, stackSlotPtr, asm.R1, asm.DWord),
	)
	// ESTABLISHED, SYN_SENT, CLOSE_WAIT, LISTEN: see the cache's comment.
	for _, st := range [...]int32{1, 2, 8, 10} {
		insns = append(insns, asm.JEq.Imm(asm.R8, st, "cacheable"))
	}
	insns = append(insns,
		asm.Ja.Label("read"),
		// r9 = cookie | state << 56; slot = cache[cookie % slots]
		asm.Mov.Reg(asm.R1, asm.R7).WithSymbol("cacheable"),
		asm.FnGetSocketCookie.Call(),
		asm.Mov.Reg(asm.R9, asm.R8),
		asm.LSh.Imm(asm.R9, 56),
		asm.Or.Reg(asm.R9, asm.R0),
		asm.And.Imm(asm.R0, int32(slots-1)),
		asm.StoreMem(asm.RFP, stackKey, asm.R0, asm.Word),
		loadCache,
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stackKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "read"),
		asm.StoreMem(asm.RFP, stackSlotPtr, asm.R0, asm.DWord),
		asm.LoadMem(asm.R1, asm.R0, slotKey, asm.DWord),
		asm.JNE.Reg(asm.R1, asm.R9, "read"),
		asm.LoadMem(asm.R1, asm.R0, slotInode, asm.DWord),
		st(recInode, asm.R1, asm.DWord),
		asm.Ja.Label("write"),
		// inode = ((struct socket_alloc *)sk->sk_socket)->vfs_inode.i_ino;
		// a read that fails leaves zeros, as for a socket without file.
		asm.Mov.Reg(asm.R1, asm.RFP).WithSymbol("read"),
		asm.Add.Imm(asm.R1, rec+recInode),
		asm.Mov.Imm(asm.R2, 8),
		asm.Mov.Reg(asm.R3, asm.R7),
		asm.Add.Imm(asm.R3, l.skSocket),
		asm.FnProbeReadKernel.Call(),
		asm.LoadMem(asm.R3, asm.RFP, rec+recInode, asm.DWord),
		asm.Mov.Imm(asm.R1, 0),
		st(recInode, asm.R1, asm.DWord),
		asm.JEq.Imm(asm.R3, 0, "write"),
		asm.Add.Imm(asm.R3, l.ino),
		asm.Mov.Reg(asm.R1, asm.RFP),
		asm.Add.Imm(asm.R1, rec+recInode),
		asm.Mov.Imm(asm.R2, 8),
		asm.FnProbeReadKernel.Call(),
		// Remember a non-zero inode in the slot of a cacheable socket.
		asm.LoadMem(asm.R0, asm.RFP, stackSlotPtr, asm.DWord),
		asm.JEq.Imm(asm.R0, 0, "write"),
		asm.LoadMem(asm.R1, asm.RFP, rec+recInode, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, "write"),
		asm.StoreMem(asm.R0, slotInode, asm.R1, asm.DWord),
		asm.StoreMem(asm.R0, slotKey, asm.R9, asm.DWord),
		// bpf_seq_write(ctx->meta->seq, record, recLen)
		asm.LoadMem(asm.R1, asm.R6, ctxMeta, asm.DWord).WithSymbol("write"),
		asm.LoadMem(asm.R1, asm.R1, 0, asm.DWord),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, rec),
		asm.Mov.Imm(asm.R3, recLen),
		asm.FnSeqWrite.Call(),
		asm.Mov.Imm(asm.R0, 0).WithSymbol("exit"),
		asm.Return(),
	)
	return insns, nil
}
