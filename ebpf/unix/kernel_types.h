/* The few kernel types the Unix-socket programs touch, declared for CO-RE: libbpf relocates
 * every field access against the running kernel's BTF (/sys/kernel/btf/vmlinux), so only the
 * names matter here, not the offsets. This stands in for a generated vmlinux.h. */
#ifndef DBW_KERNEL_TYPES_H
#define DBW_KERNEL_TYPES_H

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

/* UAPI enum values (include/uapi/linux/bpf.h). */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
};
enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

#define EACCES 13

/* Opaque context of the cgroup sock_addr Unix programs (only handed to helpers and kfuncs). */
struct bpf_sock_addr;

struct sockaddr {
	unsigned short sa_family;
	char sa_data[14];
} __attribute__((preserve_access_index));

struct sockaddr_un {
	unsigned short sun_family;
	char sun_path[108];
} __attribute__((preserve_access_index));

/* include/linux/filter.h; uaddrlen since 6.7 (the Unix hooks). */
struct bpf_sock_addr_kern {
	struct sock *sk;
	struct sockaddr *uaddr;
	__u32 uaddrlen;
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct socket {
	struct file *file;
} __attribute__((preserve_access_index));

struct sock {
	__u16 sk_type;
	struct socket *sk_socket;
} __attribute__((preserve_access_index));

/* include/net/af_unix.h */
struct unix_address {
	int len;
	struct sockaddr_un name[];
} __attribute__((preserve_access_index));

struct unix_sock {
	struct unix_address *addr;
	struct sock *peer;
} __attribute__((preserve_access_index));

#endif
