//go:build ignore

/* The tcp and udp iterator programs: one 56-byte record a socket, written
 * with bpf_seq_write. program.go documents the record, loads these
 * programs (compiled by bpf2go, see the go:generate line there) and
 * attaches them.
 */

#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* bpf_probe_read_kernel and bpf_seq_write are GPL-only helpers. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";

/* Address families (include/linux/socket.h). */
enum {
	AF_INET = 2,
	AF_INET6 = 10,
};

/* Kernel socket states (include/net/tcp_states.h) the program treats
 * apart.
 */
enum {
	TCP_ESTABLISHED = 1,
	TCP_SYN_SENT = 2,
	TCP_TIME_WAIT = 6,
	TCP_CLOSE_WAIT = 8,
	TCP_LISTEN = 10,
	TCP_NEW_SYN_RECV = 12,
};

/* The transport byte of a record: model.Transport's numbers. */
enum {
	TRANSPORT_TCP = 0,
	TRANSPORT_UDP = 1,
};

/* The record, laid out as program.go and decode.go read it. Ports and
 * addresses are in network order as the kernel keeps them, except the
 * local port (skc_num, host order).
 */
struct record {
	__u16 family;
	__u8 state;    /* sk_state: TIME_WAIT and NEW_SYN_RECV as the kernel has them */
	__u8 substate; /* tw_substate of a TIME_WAIT socket, else 0 */
	__u16 lport;
	__be16 rport;
	__u32 uid; /* as the iterator reports it */
	__u8 transport; /* TRANSPORT_TCP or TRANSPORT_UDP */
	__u8 zero[3];
	__u64 inode; /* of the socket's file, 0 when no file holds it */
	__be32 local[4];  /* IPv4: the first 4 bytes */
	__be32 remote[4];
};

_Static_assert(sizeof(struct record) == 56, "record size");
_Static_assert(__builtin_offsetof(struct record, state) == 2, "record state");
_Static_assert(__builtin_offsetof(struct record, substate) == 3, "record substate");
_Static_assert(__builtin_offsetof(struct record, lport) == 4, "record local port");
_Static_assert(__builtin_offsetof(struct record, rport) == 6, "record remote port");
_Static_assert(__builtin_offsetof(struct record, uid) == 8, "record uid");
_Static_assert(__builtin_offsetof(struct record, transport) == 12, "record transport");
_Static_assert(__builtin_offsetof(struct record, inode) == 16, "record inode");
_Static_assert(__builtin_offsetof(struct record, local) == 24, "record local address");
_Static_assert(__builtin_offsetof(struct record, remote) == 40, "record remote address");

/* The inode cache: slots keyed by socket cookie | kernel state << 56, each
 * holding the inode read for that key. Reading a socket's inode takes two
 * dependent loads from memory the walk does not touch otherwise (the
 * socket's struct socket pointer, then the inode), about a third of the
 * program's cost at 80,000 sockets; one slot read replaces both for a
 * socket seen before.
 *
 * A slot is only trusted for a state in which the socket's file can go
 * away solely through close(), and close() changes that state under the
 * socket lock, which the iterator holds while the program runs:
 * ESTABLISHED (-> FIN_WAIT1 or CLOSE), SYN_SENT (-> CLOSE), CLOSE_WAIT
 * (-> LAST_ACK), LISTEN (-> CLOSE). A socket gains its file (accept) only
 * while its inode is 0, and 0 is never cached. Cookies are never reused, so
 * a slot left by a closed socket, or taken over by another one, just
 * misses.
 */
struct slot {
	__u64 key;
	__u64 inode;
};

/* The loader sets the number of slots (a power of two) and slot_mask,
 * that number less one; these are the defaults.
 */
#define CACHE_SLOTS (1 << 17)

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct slot);
} connbeat_inodes SEC(".maps");

volatile const __u32 slot_mask = CACHE_SLOTS - 1;

static __always_inline int cacheable(__u8 state)
{
	return state == TCP_ESTABLISHED || state == TCP_SYN_SENT ||
	       state == TCP_CLOSE_WAIT || state == TCP_LISTEN;
}

/* socket_inode reads the inode number of a full socket's file:
 * ((struct socket_alloc *)sk->sk_socket)->vfs_inode.i_ino. Neither is in
 * memory the iterator hands over as BTF-typed, hence probe reads; a read
 * that fails leaves 0, as for a socket without a file.
 */
static __always_inline __u64 socket_inode(struct sock_common *sk)
{
	struct socket *sock = NULL;
	__u64 ino = 0;

	bpf_probe_read_kernel(&sock, sizeof(sock), &((struct sock *)sk)->sk_socket);
	if (!sock)
		return 0;
	bpf_probe_read_kernel(&ino, sizeof(ino),
			      (void *)sock - bpf_core_field_offset(struct socket_alloc, socket) +
				      bpf_core_field_offset(struct socket_alloc, vfs_inode) +
				      bpf_core_field_offset(struct inode, i_ino));
	return ino;
}

/* fill_addresses copies what every socket's head holds: family, state,
 * ports and addresses.
 */
static __always_inline void fill_addresses(struct record *rec, struct sock_common *sk)
{
	rec->family = sk->skc_family;
	rec->state = sk->skc_state;
	rec->lport = sk->skc_num;
	rec->rport = sk->skc_dport;
	/* Without IPv6 in the kernel the test is false at load and the IPv6
	 * loads, which the loader could not relocate, are never verified.
	 */
	if (bpf_core_field_exists(sk->skc_v6_daddr) && rec->family == AF_INET6) {
		for (int i = 0; i < 4; i++) {
			rec->local[i] = sk->skc_v6_rcv_saddr.in6_u.u6_addr32[i];
			rec->remote[i] = sk->skc_v6_daddr.in6_u.u6_addr32[i];
		}
	} else {
		rec->local[0] = sk->skc_rcv_saddr;
		rec->remote[0] = sk->skc_daddr;
	}
}

SEC("iter/tcp")
int connbeat_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *sk = ctx->sk_common;
	struct record rec = {};
	struct slot *slot = NULL;
	__u64 key = 0;
	__u8 state;

	/* The iterator calls the program once more, with no socket, at the
	 * end of the walk.
	 */
	if (!sk)
		return 0;

	fill_addresses(&rec, sk);
	state = rec.state;
	rec.transport = TRANSPORT_TCP;
	rec.uid = ctx->uid;

	/* A TIME_WAIT socket is an inet_timewait_sock: no file, but the state
	 * it stands for (FIN_WAIT2 or TIME_WAIT) is its substate.
	 */
	if (state == TCP_TIME_WAIT) {
		bpf_probe_read_kernel(&rec.substate, sizeof(rec.substate),
				      (const void *)&((struct inet_timewait_sock *)sk)->tw_substate);
		goto write;
	}
	/* A pending connection (request_sock) has no file either. */
	if (state == TCP_NEW_SYN_RECV)
		goto write;

	if (cacheable(state)) {
		__u64 cookie = bpf_get_socket_cookie(sk);
		__u32 index = cookie & slot_mask;

		key = cookie | (__u64)state << 56;
		slot = bpf_map_lookup_elem(&connbeat_inodes, &index);
		if (slot && slot->key == key) {
			rec.inode = slot->inode;
			goto write;
		}
	}
	rec.inode = socket_inode(sk);
	if (slot && rec.inode) {
		slot->inode = rec.inode;
		slot->key = key;
	}

write:
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}

/* The udp iterator visits full UDP sockets only, each hashed (bound) one
 * with the socket lock held. A UDP socket's state is CLOSE, or ESTABLISHED
 * once connected. Its inode is read every time: unlike TCP, a UDP socket
 * loses its file without a state change under that lock, so the inode
 * cache's reasoning does not hold; hosts have far fewer UDP sockets.
 */
SEC("iter/udp")
int connbeat_udp(struct bpf_iter__udp *ctx)
{
	/* A udp_sock begins with its sock_common (udp_sock.inet.sk.__sk_common). */
	struct sock_common *sk = (struct sock_common *)ctx->udp_sk;
	struct record rec = {};

	if (!sk)
		return 0;

	fill_addresses(&rec, sk);
	rec.transport = TRANSPORT_UDP;
	rec.uid = ctx->uid;
	rec.inode = socket_inode(sk);
	bpf_seq_write(ctx->meta->seq, &rec, sizeof(rec));
	return 0;
}
