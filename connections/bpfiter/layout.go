package bpfiter

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf/btf"
)

// layout holds the offsets, in bytes, of the kernel fields the iterator
// program reads, taken from the running kernel's BTF so that one program
// text serves every kernel build.
type layout struct {
	// In struct sock_common (the start of every TCP socket kind).
	family, state, num, dport, daddr, rcvSaddr int16
	// v6Daddr and v6RcvSaddr are -1 on a kernel built without IPv6.
	v6Daddr, v6RcvSaddr int16
	// skSocket is struct sock's pointer to its struct socket.
	skSocket int32
	// ino is i_ino's offset from a struct socket: the socket is embedded
	// in a struct socket_alloc beside its inode.
	ino int32
	// twSubstate is inet_timewait_sock's tw_substate: the state a
	// TIME_WAIT socket reports (FIN_WAIT2 or TIME_WAIT).
	twSubstate int32
}

// field is one member to find: its name and byte size (0: any size).
type field struct {
	name string
	size uint32
	dst  *int64
}

// layoutFrom finds the fields the program reads in the kernel's types.
func layoutFrom(spec *btf.Spec) (layout, error) {
	var (
		l                                          layout
		family, state, num, dport, daddr, rcvSaddr int64
		v6D, v6R                                   int64
		skSocket, vfsInode, sockInAlloc, iIno      int64
		twSub                                      int64
	)
	find := func(typeName string, fields ...field) error {
		var s *btf.Struct
		if err := spec.TypeByName(typeName, &s); err != nil {
			return fmt.Errorf("kernel BTF: struct %s: %w", typeName, err)
		}
		for _, f := range fields {
			off, size, ok := member(s.Members, f.name, 0)
			if !ok {
				return fmt.Errorf("kernel BTF: struct %s has no member %s", typeName, f.name)
			}
			if f.size != 0 && size != f.size {
				return fmt.Errorf("kernel BTF: %s.%s is %d bytes, want %d", typeName, f.name, size, f.size)
			}
			*f.dst = off
		}
		return nil
	}
	err := errors.Join(
		find("sock_common",
			field{"skc_family", 2, &family}, field{"skc_state", 1, &state},
			field{"skc_num", 2, &num}, field{"skc_dport", 2, &dport},
			field{"skc_daddr", 4, &daddr}, field{"skc_rcv_saddr", 4, &rcvSaddr}),
		find("sock", field{"sk_socket", 8, &skSocket}),
		find("socket_alloc", field{"socket", 0, &sockInAlloc}, field{"vfs_inode", 0, &vfsInode}),
		find("inode", field{"i_ino", 8, &iIno}),
		find("inet_timewait_sock", field{"tw_substate", 1, &twSub}),
	)
	if err != nil {
		return l, err
	}
	if find("sock_common", field{"skc_v6_daddr", 16, &v6D}, field{"skc_v6_rcv_saddr", 16, &v6R}) != nil {
		v6D, v6R = -1, -1 // no IPv6 in this kernel: no IPv6 sockets either
	}
	l = layout{
		family: int16(family), state: int16(state), num: int16(num), dport: int16(dport),
		daddr: int16(daddr), rcvSaddr: int16(rcvSaddr),
		v6Daddr: int16(v6D), v6RcvSaddr: int16(v6R),
		skSocket:   int32(skSocket),
		ino:        int32(vfsInode - sockInAlloc + iIno),
		twSubstate: int32(twSub),
	}
	return l, nil
}

// member finds a member by name, looking into anonymous structs and
// unions, and returns its byte offset and size.
func member(ms []btf.Member, name string, base btf.Bits) (off int64, size uint32, ok bool) {
	for _, m := range ms {
		at := base + m.Offset
		if m.Name == name {
			if at%8 != 0 || m.BitfieldSize != 0 {
				return 0, 0, false
			}
			sz, err := btf.Sizeof(m.Type)
			if err != nil {
				return 0, 0, false
			}
			return int64(at / 8), uint32(sz), true
		}
		if m.Name != "" {
			continue
		}
		switch t := btf.UnderlyingType(m.Type).(type) {
		case *btf.Struct:
			if off, size, ok := member(t.Members, name, at); ok {
				return off, size, true
			}
		case *btf.Union:
			if off, size, ok := member(t.Members, name, at); ok {
				return off, size, true
			}
		}
	}
	return 0, 0, false
}
