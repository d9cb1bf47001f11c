/* The kernel types iter.bpf.c reads, written by hand in place of a
 * generated vmlinux.h (megabytes for a dozen members).
 *
 * Every struct here is marked preserve_access_index: clang records each
 * member access as a CO-RE relocation, and the loader (cilium/ebpf) moves
 * it to the member's offset in the running kernel's BTF, looking through
 * the kernel's anonymous unions and structs. So a struct lists only the
 * members the program uses, in any order. What the loader does not adjust
 * is an access's size: each member has the kernel's type (the verifier
 * refuses a direct load wider than the kernel's member; the inode reads
 * are probe reads of 8 bytes, which the Go side checks against the
 * kernel's BTF before loading).
 */
#ifndef CONNBEAT_KERNEL_H
#define CONNBEAT_KERNEL_H

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
typedef __u32 uid_t;

/* The map type the program's inode cache is (include/uapi/linux/bpf.h). */
enum bpf_map_type {
	BPF_MAP_TYPE_ARRAY = 2,
};

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__be32 u6_addr32[4];
	} in6_u;
};

/* The head of every socket the tcp iterator visits: a full socket, a
 * timewait sock or a request sock. In the kernel the address and port
 * pairs sit in anonymous unions; the IPv6 addresses exist only in a kernel
 * built with IPv6.
 */
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
};

struct socket;

struct sock {
	struct sock_common __sk_common;
	struct socket *sk_socket;
};

/* A struct socket is allocated inside a struct socket_alloc, beside the
 * inode of the socket's file.
 */
struct socket {
};

struct inode {
	unsigned long i_ino;
};

struct socket_alloc {
	struct socket socket;
	struct inode vfs_inode;
};

struct inet_timewait_sock {
	struct sock_common __tw_common;
	volatile unsigned char tw_substate;
};

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
};

/* The context of a tcp iterator program. */
struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
	uid_t uid;
};

struct udp_sock;

/* The context of a udp iterator program. */
struct bpf_iter__udp {
	struct bpf_iter_meta *meta;
	struct udp_sock *udp_sk;
	uid_t uid;
};

#pragma clang attribute pop

#endif
