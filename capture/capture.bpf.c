//go:build ignore

/* The event capture's programs. program.go loads them (compiled by
 * bpf2go, see the go:generate line there) and attaches them; record.go
 * decodes what they write to the ring buffer.
 *
 * TCP: tp_btf/inet_sock_set_state sees every state change of every TCP
 * socket of every network namespace. A connect (CLOSE -> SYN_SENT) and a
 * listen (CLOSE -> LISTEN) run in the calling process's context, so the
 * process is read there; a passive socket (-> SYN_RECV) runs in softirq
 * context and is given the process that holds its listener. Each open
 * connection has an entry in the conns map (keyed by socket cookie), so
 * that its close, in whatever context it runs, still knows who made it.
 *
 * UDP: the cgroup sock_addr hooks on the cgroup2 root run in the caller's
 * context for sendto/sendmsg to an address (sendmsg4/6), recvfrom with an
 * address (recvmsg4/6) and connect (connect4/6); each (process, local
 * address, remote address) pair has an entry in the udp map, announced
 * once on the ring buffer and aged out by user space.
 */

#include "kernel.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* bpf_probe_read_kernel and bpf_get_current_task_btf are GPL-only. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";

enum {
	AF_INET = 2,
	AF_INET6 = 10,
	IPPROTO_TCP = 6,
	IPPROTO_UDP = 17,
	SOCK_DGRAM = 2,
};

enum {
	TCP_ESTABLISHED = 1,
	TCP_SYN_SENT = 2,
	TCP_SYN_RECV = 3,
	TCP_FIN_WAIT2 = 5,
	TCP_CLOSE = 7,
	TCP_LAST_ACK = 9,
	TCP_LISTEN = 10,
	TCP_CLOSING = 11,
};

/* enum sock_flags (include/net/sock.h): set by tcp_fin() when the peer's
 * FIN arrives, and by nothing else for TCP.
 */
enum {
	SOCK_DONE = 1,
};

/* Record types (record.go). */
enum {
	REC_OPEN = 1,     /* a TCP connection reached ESTABLISHED */
	REC_CLOSE = 2,    /* a TCP connection (or connect attempt) ended */
	REC_LISTEN = 3,   /* a TCP socket started listening */
	REC_UNLISTEN = 4, /* a listener closed */
	REC_UDP = 5,      /* a UDP pair's first datagram or connect */
};

/* Record flags. */
enum {
	F_PASSIVE = 1,  /* the peer initiated it (inbound) */
	F_OWNER = 2,    /* tgid, uid, cgroup and comm are known */
	F_RECV = 4,     /* UDP: first seen receiving */
	F_CONNECT = 8,  /* UDP: a connect(), not a datagram */
	/* In the conns map only: */
	F_ESTABLISHED = 16, /* it reached ESTABLISHED */
	F_FIN_ACKED = 32,   /* the peer acknowledged our FIN (FIN_WAIT2) */
};

/* Counters (counters.go), per CPU. */
enum {
	CNT_LOST = 0,        /* records the full ring buffer refused */
	CNT_CONN_FAIL,       /* conns map inserts that failed */
	CNT_CONN_INSERTED,   /* conns map inserts */
	CNT_CONN_DELETED,    /* conns map deletes */
	CNT_UDP_FAIL,        /* udp map inserts that failed */
	CNT_UDP_INSERTED,    /* udp map inserts */
	CNT_LISTEN_FAIL,     /* listeners map inserts that failed */
	CNT_UNTRACKED_CLOSE, /* closes of connections without a conns entry */
	CNT_CLOSE_RECOVERED, /* closes connbeat_state missed, seen at destroy */
	CNT_MAX,
};

struct owner {
	__u32 tgid;
	__u32 uid;
	__u64 cgroup;
	char comm[16];
};

struct conn {
	struct owner owner;
	__u64 start_ns;
	__u32 flags;
	__u32 pad;
};

struct listen_key {
	__u32 netns;
	__u16 port;
	__u16 pad;
};

struct udp_key {
	__u32 tgid;
	__u32 netns;
	__u16 family;
	__u16 lport; /* host order */
	__u16 rport; /* host order */
	__u16 pad;
	__u8 laddr[16];
	__u8 raddr[16];
};

struct udp_pair {
	struct owner owner;
	__u64 first_ns;
	__u64 last_ns;
	__u64 sent;     /* datagrams sent to an address */
	__u64 received; /* datagrams received with their address asked for */
};

/* The ring buffer record, laid out as record.go reads it. */
struct record {
	__u8 type;
	__u8 family;
	__u8 oldstate;
	__u8 flags;
	__u16 lport; /* host order */
	__u16 rport; /* host order */
	__u32 tgid;
	__u32 uid;
	__s32 sk_err;
	__u32 netns;
	__u64 cookie;
	__u64 cgroup;
	__u64 start_ns;
	__u64 ts_ns;
	__u8 laddr[16];
	__u8 raddr[16];
	char comm[16];
	__u64 bytes_sent;
	__u64 bytes_received;
	__u32 segs_sent;
	__u32 segs_received;
	__u32 retrans;
	__u32 srtt_us;
};

_Static_assert(sizeof(struct record) == 136, "record size");
_Static_assert(__builtin_offsetof(struct record, cookie) == 24, "record cookie");
_Static_assert(__builtin_offsetof(struct record, laddr) == 56, "record laddr");
_Static_assert(__builtin_offsetof(struct record, comm) == 88, "record comm");
_Static_assert(__builtin_offsetof(struct record, bytes_sent) == 104, "record bytes");
_Static_assert(sizeof(struct udp_key) == 48, "udp key size");
_Static_assert(sizeof(struct udp_pair) == 64, "udp pair size");

/* The loader sizes every map from the configuration. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct conn);
} connbeat_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct listen_key);
	__type(value, struct owner);
} connbeat_listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct udp_key);
	__type(value, struct udp_pair);
} connbeat_udp SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} connbeat_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} connbeat_counters SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&connbeat_counters, &which);

	if (n)
		*n += 1;
}

static __always_inline void current_owner(struct owner *o)
{
	__u64 uid_gid = bpf_get_current_uid_gid();

	o->tgid = bpf_get_current_pid_tgid() >> 32;
	o->uid = (__u32)uid_gid;
	o->cgroup = bpf_get_current_cgroup_id();
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

static __always_inline unsigned long sock_flags(const struct sock *sk)
{
	if (bpf_core_field_exists(sk->__sk_common.skc_flags))
		return BPF_CORE_READ(sk, __sk_common.skc_flags);
	return BPF_CORE_READ((const struct sock___old *)sk, sk_flags);
}

static __always_inline void put_owner(struct record *r, const struct owner *o)
{
	r->tgid = o->tgid;
	r->uid = o->uid;
	r->cgroup = o->cgroup;
	__builtin_memcpy(r->comm, o->comm, sizeof(r->comm));
	r->flags |= F_OWNER;
}

static __always_inline __u32 sock_netns(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
}

/* local_port is the socket's local port. The kernel releases it (zeroes
 * skc_num) on the way to CLOSE, before the tracepoint runs, but leaves
 * inet_sport. (A listen() without bind() picks its port only after the
 * state changed: such a listener is seen with port 0.)
 */
static __always_inline __u16 local_port(const struct sock *sk)
{
	__u16 port = BPF_CORE_READ(sk, __sk_common.skc_num);

	if (!port)
		port = __builtin_bswap16(BPF_CORE_READ((const struct inet_sock *)sk, inet_sport));
	return port;
}

/* fill_addrs copies a socket's family, ports and addresses. */
static __always_inline void fill_addrs(struct record *r, const struct sock *sk)
{
	r->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	r->lport = local_port(sk);
	r->rport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (bpf_core_field_exists(sk->__sk_common.skc_v6_daddr) && r->family == AF_INET6) {
		BPF_CORE_READ_INTO(&r->laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&r->raddr, sk, __sk_common.skc_v6_daddr);
	} else {
		BPF_CORE_READ_INTO((__u32 *)r->laddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)r->raddr, sk, __sk_common.skc_daddr);
	}
	r->netns = sock_netns(sk);
}

static __always_inline struct record *reserve(void)
{
	struct record *r = bpf_ringbuf_reserve(&connbeat_events, sizeof(*r), 0);

	if (!r) {
		count(CNT_LOST);
		return 0;
	}
	__builtin_memset(r, 0, sizeof(*r));
	return r;
}

/* Ring buffer wakeups (include/uapi/linux/bpf.h). */
enum {
	RB_NO_WAKEUP = 1,
	RB_FORCE_WAKEUP = 2,
	RB_AVAIL_DATA = 0,
	RB_RING_SIZE = 1,
};

/* submit hands a record over without waking the reader, which reads on a
 * timer of its own, many records a wakeup: a wakeup a record would cost
 * user space more than the record itself. Once a sixteenth of the buffer
 * waits, the reader is woken at once: under churn it then takes records
 * in many small reads, each handed on at once, rather than in a few big
 * ones that the agent would hold in memory all together, and a burst has
 * the other fifteen sixteenths to land in while it catches up.
 */
static __always_inline void submit(struct record *r)
{
	__u64 waiting = bpf_ringbuf_query(&connbeat_events, RB_AVAIL_DATA);
	__u64 size = bpf_ringbuf_query(&connbeat_events, RB_RING_SIZE);

	bpf_ringbuf_submit(r, waiting >= size / 16 ? RB_FORCE_WAKEUP : RB_NO_WAKEUP);
}

static __always_inline void on_listen(const struct sock *sk, __u64 cookie, int start)
{
	struct listen_key key = {
		.netns = sock_netns(sk),
		.port = local_port(sk),
	};
	struct owner o = {};
	struct record *r;

	if (start) {
		current_owner(&o);
		if (bpf_map_update_elem(&connbeat_listeners, &key, &o, BPF_ANY))
			count(CNT_LISTEN_FAIL);
	} else {
		struct owner *held = bpf_map_lookup_elem(&connbeat_listeners, &key);

		if (held)
			o = *held;
		bpf_map_delete_elem(&connbeat_listeners, &key);
	}
	r = reserve();
	if (!r)
		return;
	r->type = start ? REC_LISTEN : REC_UNLISTEN;
	r->cookie = cookie;
	r->ts_ns = bpf_ktime_get_ns();
	fill_addrs(r, sk);
	if (o.tgid)
		put_owner(r, &o);
	submit(r);
}

static __always_inline void track(__u64 cookie, struct conn *c)
{
	if (bpf_map_update_elem(&connbeat_conns, &cookie, c, BPF_NOEXIST))
		count(CNT_CONN_FAIL);
	else
		count(CNT_CONN_INSERTED);
}

/* put_conn puts in r what the conns entry c (NULL when the capture never
 * saw the connection start) knows: its start, its owner, whether the peer
 * opened it; without an entry, a socket that was SYN_RECV was opened by
 * the peer.
 */
static __always_inline void put_conn(struct record *r, const struct conn *c, int oldstate)
{
	if (c) {
		r->start_ns = c->start_ns;
		r->flags |= c->flags & F_PASSIVE;
		if (c->flags & F_OWNER)
			put_owner(r, &c->owner);
	} else if (oldstate == TCP_SYN_RECV) {
		r->flags |= F_PASSIVE;
	}
}

/* emit_close hands over a TCP connection's end (or a failed connect's):
 * its counters, how it ended, and from its conns entry c (NULL when the
 * capture never saw it start) its start and owner.
 */
static __always_inline void emit_close(const struct sock *sk, __u64 cookie, int oldstate, struct conn *c)
{
	const struct tcp_sock *tp = (const struct tcp_sock *)sk;
	struct record *r = reserve();

	if (!r)
		return;
	r->type = REC_CLOSE;
	r->oldstate = oldstate;
	r->cookie = cookie;
	r->ts_ns = bpf_ktime_get_ns();
	fill_addrs(r, sk);
	r->sk_err = BPF_CORE_READ(sk, sk_err);
	r->bytes_sent = BPF_CORE_READ(tp, bytes_acked);
	r->bytes_received = BPF_CORE_READ(tp, bytes_received);
	/* Payload only: the sequence numbers the SYN and the FINs take
	 * are counted too. A FIN received counts in bytes_received; an
	 * active opener's SYN and an acknowledged FIN in bytes_acked.
	 */
	if (sock_flags(sk) & (1UL << SOCK_DONE) && r->bytes_received)
		r->bytes_received--;
	if (c) {
		int fin_acked = c->flags & F_FIN_ACKED ||
				((oldstate == TCP_LAST_ACK || oldstate == TCP_CLOSING) && !r->sk_err);

		if (c->flags & F_ESTABLISHED && !(c->flags & F_PASSIVE) && r->bytes_sent)
			r->bytes_sent--;
		if (fin_acked && r->bytes_sent)
			r->bytes_sent--;
	}
	r->segs_sent = BPF_CORE_READ(tp, segs_out);
	r->segs_received = BPF_CORE_READ(tp, segs_in);
	r->retrans = BPF_CORE_READ(tp, total_retrans);
	r->srtt_us = BPF_CORE_READ(tp, srtt_us) >> 3;
	put_conn(r, c, oldstate);
	submit(r);
}

SEC("tp_btf/inet_sock_set_state")
int connbeat_state(unsigned long long *ctx)
{
	const struct sock *sk = (const struct sock *)ctx[0];
	int oldstate = (int)ctx[1];
	int newstate = (int)ctx[2];
	struct conn *c, fresh = {};
	struct record *r;
	__u64 cookie;

	if (BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	cookie = bpf_get_socket_cookie((void *)sk);

	switch (newstate) {
	case TCP_LISTEN:
		on_listen(sk, cookie, 1);
		return 0;
	case TCP_SYN_SENT:
		/* connect(): the caller's context. */
		current_owner(&fresh.owner);
		fresh.start_ns = bpf_ktime_get_ns();
		fresh.flags = F_OWNER;
		track(cookie, &fresh);
		return 0;
	case TCP_SYN_RECV: {
		/* A passive socket, in softirq context: its listener's holder. */
		struct listen_key key = {
			.netns = sock_netns(sk),
			.port = BPF_CORE_READ(sk, __sk_common.skc_num),
		};
		struct owner *o = bpf_map_lookup_elem(&connbeat_listeners, &key);

		fresh.start_ns = bpf_ktime_get_ns();
		fresh.flags = F_PASSIVE;
		if (o) {
			fresh.owner = *o;
			fresh.flags |= F_OWNER;
		}
		track(cookie, &fresh);
		return 0;
	}
	case TCP_ESTABLISHED:
		if (oldstate != TCP_SYN_SENT && oldstate != TCP_SYN_RECV)
			return 0;
		c = bpf_map_lookup_elem(&connbeat_conns, &cookie);
		r = reserve();
		if (!r)
			return 0;
		r->type = REC_OPEN;
		r->oldstate = oldstate;
		r->cookie = cookie;
		r->ts_ns = bpf_ktime_get_ns();
		fill_addrs(r, sk);
		if (c)
			c->flags |= F_ESTABLISHED;
		put_conn(r, c, oldstate);
		submit(r);
		return 0;
	case TCP_FIN_WAIT2:
		c = bpf_map_lookup_elem(&connbeat_conns, &cookie);
		if (c)
			c->flags |= F_FIN_ACKED;
		return 0;
	case TCP_CLOSE:
		break;
	default:
		return 0;
	}

	if (oldstate == TCP_LISTEN) {
		on_listen(sk, cookie, 0);
		return 0;
	}
	c = bpf_map_lookup_elem(&connbeat_conns, &cookie);
	if (!c)
		count(CNT_UNTRACKED_CLOSE);
	emit_close(sk, cookie, oldstate, c);
	if (c && !bpf_map_delete_elem(&connbeat_conns, &cookie))
		count(CNT_CONN_DELETED);
	return 0;
}

/* The kernel (6.1 and later) skips a tracing program's run on a CPU where
 * that program is already running: a state change in a softirq that
 * interrupts connbeat_state (a loopback packet delivered while it handles
 * another socket) goes unseen, and under churn some closes would be lost
 * with their flows. Every TCP socket is destroyed after its
 * last state change, and this other program, which does not share
 * connbeat_state's guard, finds the entry of a connection whose close it
 * missed still in the map: it hands the close over then, its counters
 * final, its last state told by what the entry saw.
 */
SEC("tp_btf/tcp_destroy_sock")
int connbeat_destroy(unsigned long long *ctx)
{
	const struct sock *sk = (const struct sock *)ctx[0];
	__u64 cookie = bpf_get_socket_cookie((void *)sk);
	struct conn *c = bpf_map_lookup_elem(&connbeat_conns, &cookie);
	int oldstate;

	if (!c)
		return 0; /* closed as seen, or never tracked */
	if (c->flags & F_FIN_ACKED)
		oldstate = TCP_FIN_WAIT2;
	else if (!(c->flags & F_ESTABLISHED))
		oldstate = c->flags & F_PASSIVE ? TCP_SYN_RECV : TCP_SYN_SENT;
	else if (sock_flags(sk) & (1UL << SOCK_DONE))
		oldstate = TCP_LAST_ACK; /* the peer's FIN came first */
	else
		oldstate = TCP_ESTABLISHED;
	count(CNT_CLOSE_RECOVERED);
	emit_close(sk, cookie, oldstate, c);
	if (!bpf_map_delete_elem(&connbeat_conns, &cookie))
		count(CNT_CONN_DELETED);
	return 0;
}

/* udp_seen records one datagram (or connect) of the calling process on a
 * UDP socket to or from the address in ctx; the first of a pair is
 * announced on the ring buffer.
 */
static __always_inline int udp_seen(struct bpf_sock_addr *ctx, int v6, __u32 flags)
{
	struct bpf_sock *sk = ctx->sk;
	struct task_struct *task;
	struct udp_key key = {};
	struct udp_pair *p, fresh = {};
	struct record *r;
	__u64 now;

	if (ctx->type != SOCK_DGRAM || ctx->protocol != IPPROTO_UDP || !sk)
		return 1;
	now = bpf_ktime_get_ns();
	key.tgid = bpf_get_current_pid_tgid() >> 32;
	task = bpf_get_current_task_btf();
	key.netns = BPF_CORE_READ(task, nsproxy, net_ns, ns.inum);
	key.family = v6 ? AF_INET6 : AF_INET;
	key.lport = sk->src_port;
	key.rport = __builtin_bswap16(ctx->user_port);
	if (v6) {
		__u32 *l = (__u32 *)key.laddr, *rm = (__u32 *)key.raddr;

		l[0] = sk->src_ip6[0];
		l[1] = sk->src_ip6[1];
		l[2] = sk->src_ip6[2];
		l[3] = sk->src_ip6[3];
		if (!(flags & (F_RECV | F_CONNECT))) {
			if (ctx->msg_src_ip6[0] | ctx->msg_src_ip6[1] | ctx->msg_src_ip6[2] | ctx->msg_src_ip6[3]) {
				l[0] = ctx->msg_src_ip6[0];
				l[1] = ctx->msg_src_ip6[1];
				l[2] = ctx->msg_src_ip6[2];
				l[3] = ctx->msg_src_ip6[3];
			}
		}
		rm[0] = ctx->user_ip6[0];
		rm[1] = ctx->user_ip6[1];
		rm[2] = ctx->user_ip6[2];
		rm[3] = ctx->user_ip6[3];
	} else {
		__u32 src = sk->src_ip4;

		if (!(flags & (F_RECV | F_CONNECT)) && ctx->msg_src_ip4)
			src = ctx->msg_src_ip4;
		*(__u32 *)key.laddr = src;
		*(__u32 *)key.raddr = ctx->user_ip4;
	}

	p = bpf_map_lookup_elem(&connbeat_udp, &key);
	if (p) {
		p->last_ns = now;
		if (flags & F_RECV)
			__sync_fetch_and_add(&p->received, 1);
		else if (!(flags & F_CONNECT))
			__sync_fetch_and_add(&p->sent, 1);
		return 1;
	}
	current_owner(&fresh.owner);
	fresh.first_ns = now;
	fresh.last_ns = now;
	if (flags & F_RECV)
		fresh.received = 1;
	else if (!(flags & F_CONNECT))
		fresh.sent = 1;
	if (bpf_map_update_elem(&connbeat_udp, &key, &fresh, BPF_NOEXIST)) {
		count(CNT_UDP_FAIL);
		return 1;
	}
	count(CNT_UDP_INSERTED);
	r = reserve();
	if (!r)
		return 1;
	r->type = REC_UDP;
	r->family = key.family;
	r->flags = flags;
	r->lport = key.lport;
	r->rport = key.rport;
	r->netns = key.netns;
	r->start_ns = now;
	r->ts_ns = now;
	__builtin_memcpy(r->laddr, key.laddr, sizeof(r->laddr));
	__builtin_memcpy(r->raddr, key.raddr, sizeof(r->raddr));
	put_owner(r, &fresh.owner);
	submit(r);
	return 1;
}

SEC("cgroup/sendmsg4")
int connbeat_sendmsg4(struct bpf_sock_addr *ctx) { return udp_seen(ctx, 0, 0); }

SEC("cgroup/sendmsg6")
int connbeat_sendmsg6(struct bpf_sock_addr *ctx) { return udp_seen(ctx, 1, 0); }

SEC("cgroup/recvmsg4")
int connbeat_recvmsg4(struct bpf_sock_addr *ctx) { return udp_seen(ctx, 0, F_RECV); }

SEC("cgroup/recvmsg6")
int connbeat_recvmsg6(struct bpf_sock_addr *ctx) { return udp_seen(ctx, 1, F_RECV); }

SEC("cgroup/connect4")
int connbeat_connect4(struct bpf_sock_addr *ctx) { return udp_seen(ctx, 0, F_CONNECT); }

SEC("cgroup/connect6")
int connbeat_connect6(struct bpf_sock_addr *ctx) { return udp_seen(ctx, 1, F_CONNECT); }
