/* The kernel types capture.bpf.c reads, written by hand in place of a
 * generated vmlinux.h (megabytes for a few dozen members), as in
 * connections/bpfiter/kernel.h: every struct in the preserve_access_index
 * block lists only the members the programs read, and the loader moves
 * each access to the member's offset in the running kernel's BTF.
 *
 * The uapi context structs (bpf_sock_addr, bpf_sock) are outside that
 * block: their layout is ABI, and the verifier rewrites accesses to them.
 */
#ifndef CONNBEAT_CAPTURE_KERNEL_H
#define CONNBEAT_CAPTURE_KERNEL_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

/* include/uapi/linux/bpf.h */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

struct bpf_sock {
	__u32 bound_dev_if;
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 mark;
	__u32 priority;
	__u32 src_ip4;
	__u32 src_ip6[4];
	__u32 src_port; /* host order */
	__be16 dst_port;
	__u16 :16;
	__u32 dst_ip4;
	__u32 dst_ip6[4];
	__u32 state;
	__s32 rx_queue_mapping;
};

struct bpf_sock_addr {
	__u32 user_family;
	__u32 user_ip4;    /* network order */
	__u32 user_ip6[4]; /* network order */
	__u32 user_port;   /* network order, low 16 bits */
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 msg_src_ip4;    /* network order */
	__u32 msg_src_ip6[4]; /* network order */
	union {
		struct bpf_sock *sk;
		__u64 :64;
	};
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__be32 u6_addr32[4];
	} in6_u;
};

struct ns_common {
	unsigned int inum;
};

struct net {
	struct ns_common ns;
};

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	possible_net_t skc_net;
	unsigned long skc_flags; /* Linux 6.10 and later; sk_flags before */
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
};

struct sock {
	struct sock_common __sk_common;
	int sk_err;
	__u16 sk_protocol;
};

/* The struct sock of kernels before 6.10 (a CO-RE flavour: the loader
 * matches it to struct sock).
 */
struct sock___old {
	unsigned long sk_flags;
};

/* inet_sport survives the release of the local port at close, which
 * zeroes skc_num.
 */
struct inet_sock {
	__be16 inet_sport;
};

/* struct tcp_sock starts with the struct sock it extends; only the
 * counters read at close are listed.
 */
struct tcp_sock {
	__u32 segs_in;
	__u32 segs_out;
	__u64 bytes_received;
	__u64 bytes_acked;
	__u32 total_retrans;
	__u32 srtt_us;
};

struct nsproxy {
	struct net *net_ns;
};

struct task_struct {
	struct nsproxy *nsproxy;
};

#pragma clang attribute pop

#endif
