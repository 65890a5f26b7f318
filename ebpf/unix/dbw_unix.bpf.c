// SPDX-License-Identifier: GPL-2.0
/* dbwarden's Unix-socket interception, attached to every controlled cgroup v2 directory.
 *
 * redirect mode (kernel 6.7+, cgroup/connect_unix):
 *
 * | program              | hook                     | job                                        |
 * |----------------------|--------------------------|--------------------------------------------|
 * | dbw_connect_unix     | cgroup/connect_unix      | rewrite every stream connect to a named    |
 * |                      |                          | socket to the daemon's resolver listener;  |
 * |                      |                          | record                                     |
 * |                      |                          | the caller and the path it asked for       |
 * | dbw_getpeername_unix | cgroup/getpeername_unix  | show the agent the path it asked for       |
 * |                      | (on the daemon's cgroup) |                                            |
 *
 * Why every connect and not just the database paths: this hook sees the path string before
 * the kernel resolves it, so "/run/postgresql/./.s.PGSQL.5432", a symlink, a hard link or a
 * path relative to a chdir() would all name the database socket without matching any string
 * list. The daemon resolves the path itself, as the agent (its root, cwd and credentials),
 * and judges the socket actually reached: a database socket gets a policed session, the
 * daemon's control socket is refused, anything else is relayed as bytes. No path string is
 * ever let through unjudged: the string is resolved in the agent's own mount namespace and
 * root, which it may control (user namespaces), so no string list can be trusted.
 *
 * lsm mode (BPF LSM, for kernels without connect_unix):
 *
 * | dbw_unix_guard       | lsm_cgroup/unix_stream_connect | refuse (EACCES) a connect whose   |
 * |                      |                                | listener is bound to a database   |
 * |                      |                                | or control socket name            |
 *
 * The programs run for sockets created in a controlled cgroup, like connect4/6, so the
 * daemon's own connections are untouched. Except getpeername_unix: the kernel runs it with
 * the *peer* socket (unix_getname switches to unix_peer_get(sk)), which for a redirected
 * agent is the socket the daemon accepted, so it is attached to the daemon's cgroup and
 * finds the agent's record through that socket's peer. Built by userspace/dbwarden/build.rs with clang
 * -target bpf; loaded by libbpf (CO-RE).
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "dbw_unix.h"

/* cgroup sock_addr programs: 1 = proceed, 0 = refuse (EPERM). */
#define PASS 1
#define REFUSE 0
/* lsm_cgroup programs: 1 = allow, 0 = deny (with the errno set by bpf_set_retval). */
#define ALLOW 1
#define DENY 0

#define SOCK_STREAM 1
#define AF_UNIX 1

/* barrier_var (bpf_helpers.h) keeps the compiler from checking a bound on one register and
 * using a copy whose bound the verifier does not know: hence the checks repeated after it. */

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;
extern int bpf_sock_addr_set_sun_path(struct bpf_sock_addr_kern *sa_kern, const __u8 *sun_path,
				      __u32 sun_path__sz) __ksym;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dbw_unix_config);
} DBW_UNIX_CONFIG SEC(".maps");

/* lsm mode: bound names refused. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 512);
	__type(key, struct dbw_unix_path);
	__type(value, __u32);
} DBW_UNIX_DENY SEC(".maps");

/* Inode of the agent's socket -> the path it asked for (getpeername). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct dbw_unix_name);
} DBW_UNIX_ORIG SEC(".maps");

/* Inode of the agent's socket -> identity and requested path, taken by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct dbw_unix_conn);
} DBW_UNIX_CONNS SEC(".maps");

/* Scratch space for a connect's record (192 bytes do not fit beside the rest on the stack). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dbw_unix_conn);
} DBW_UNIX_SCRATCH SEC(".maps");

/* Copies a sun_path of `n` bytes into a zeroed name and cuts it at the first NUL, as the
 * kernel does (unix_mkname_bsd). Sets and returns the name's length + 1 (108 for a name
 * without a NUL), or 0 for an empty or abstract name. */
static __always_inline __u32 read_name(struct dbw_unix_name *out, const void *sun_path, __u64 n)
{
	/* A 64-bit size checked in the register that is passed: a u32 would be zero-extended
	 * into a copy whose bound the verifier does not know. */
	if (n == 0 || n > DBW_SUN_PATH)
		return 0;
	barrier_var(n);
	if (n > DBW_SUN_PATH)
		return 0;
	if (bpf_probe_read_kernel(out->path, n, sun_path))
		return 0;
	if (out->path[0] == 0)
		return 0;
	__u32 len = DBW_SUN_PATH;
	int end = 0;
	for (int i = 0; i < DBW_SUN_PATH; i++) {
		if (end) {
			out->path[i] = 0;
		} else if (out->path[i] == 0) {
			end = 1;
			len = i + 1;
		}
	}
	out->len = len;
	return len;
}

SEC("cgroup/connect_unix")
int dbw_connect_unix(struct bpf_sock_addr *ctx)
{
	struct bpf_sock_addr_kern *sa = bpf_cast_to_kern_ctx(ctx);
	struct sock *sk = sa->sk;
	if (BPF_CORE_READ(sk, sk_type) != SOCK_STREAM)
		return PASS; /* datagram/seqpacket cannot reach a stream database socket */
	__u64 alen = sa->uaddrlen;
	if (alen <= 2)
		return PASS; /* unnamed: autobind */
	__u32 zero = 0;
	struct dbw_unix_conn *rec = bpf_map_lookup_elem(&DBW_UNIX_SCRATCH, &zero);
	if (!rec)
		return REFUSE;
	__builtin_memset(rec, 0, sizeof(*rec));
	if (!read_name(&rec->orig, (const char *)sa->uaddr + 2, alen - 2))
		return PASS; /* abstract namespace: no database listens there */
	struct dbw_unix_config *cfg = bpf_map_lookup_elem(&DBW_UNIX_CONFIG, &zero);
	if (!cfg || !cfg->ready)
		return REFUSE; /* fail closed: the daemon has not filled the maps */
	__u64 ino = BPF_CORE_READ(sk, sk_socket, file, f_inode, i_ino);
	if (ino == 0)
		return REFUSE;
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 uid_gid = bpf_get_current_uid_gid();
	rec->info.family = AF_UNIX;
	rec->info.tgid = pid_tgid >> 32;
	rec->info.pid = (__u32)pid_tgid;
	rec->info.uid = (__u32)uid_gid;
	rec->info.gid = uid_gid >> 32;
	rec->info.cgroup_id = bpf_get_current_cgroup_id();
	rec->info.cookie = bpf_get_socket_cookie(ctx);
	rec->info.ktime_ns = bpf_ktime_get_boot_ns();
	bpf_get_current_comm(rec->info.comm, sizeof(rec->info.comm));
	if (bpf_map_update_elem(&DBW_UNIX_CONNS, &ino, rec, BPF_ANY))
		return REFUSE;
	if (bpf_map_update_elem(&DBW_UNIX_ORIG, &ino, &rec->orig, BPF_ANY))
		return REFUSE;
	__u64 n = cfg->resolver.len;
	if (n == 0 || n > DBW_SUN_PATH)
		return REFUSE;
	barrier_var(n);
	if (n > DBW_SUN_PATH)
		return REFUSE;
	if (bpf_sock_addr_set_sun_path(sa, (const __u8 *)cfg->resolver.path, n))
		return REFUSE;
	return PASS;
}

SEC("cgroup/getpeername_unix")
int dbw_getpeername_unix(struct bpf_sock_addr *ctx)
{
	struct bpf_sock_addr_kern *sa = bpf_cast_to_kern_ctx(ctx);
	/* sa->sk is the socket whose name is asked for: the daemon's end; its peer is the
	 * agent's socket, which the record is keyed by. */
	struct unix_sock *me = (struct unix_sock *)sa->sk;
	struct sock *agent = BPF_CORE_READ(me, peer);
	if (!agent)
		return PASS;
	__u64 ino = BPF_CORE_READ(agent, sk_socket, file, f_inode, i_ino);
	struct dbw_unix_name *orig = bpf_map_lookup_elem(&DBW_UNIX_ORIG, &ino);
	if (!orig)
		return PASS;
	__u64 n = orig->len;
	if (n == 0 || n > DBW_SUN_PATH)
		return PASS;
	barrier_var(n);
	if (n > DBW_SUN_PATH)
		return PASS;
	bpf_sock_addr_set_sun_path(sa, (const __u8 *)orig->path, n);
	return PASS;
}

/* Basename `.s.PGSQL.<anything>`, `mysqld.sock` or `mysql.sock`. */
static __always_inline int looks_like_db_socket(const struct dbw_unix_name *k)
{
	__u32 base = 0;
	for (int i = 0; i < DBW_SUN_PATH; i++) {
		char c = k->path[i];
		if (c == 0)
			break;
		if (c == '/')
			base = i + 1;
	}
	if (base > DBW_SUN_PATH - 12)
		return 0;
	const char *b = &k->path[base];
	if (b[0] == '.' && b[1] == 's' && b[2] == '.' && b[3] == 'P' && b[4] == 'G' && b[5] == 'S' &&
	    b[6] == 'Q' && b[7] == 'L' && b[8] == '.')
		return 1;
	if (b[0] == 'm' && b[1] == 'y' && b[2] == 's' && b[3] == 'q' && b[4] == 'l') {
		const char *r = &b[5];
		if (r[0] == 'd')
			r = &b[6];
		if (r[0] == '.' && r[1] == 's' && r[2] == 'o' && r[3] == 'c' && r[4] == 'k' && r[5] == 0)
			return 1;
	}
	return 0;
}

static __always_inline int deny(void)
{
	bpf_set_retval(-EACCES);
	return DENY;
}

SEC("lsm_cgroup/unix_stream_connect")
int dbw_unix_guard(unsigned long long *ctx)
{
	struct sock *other = (struct sock *)ctx[1];
	struct unix_sock *u = bpf_skc_to_unix_sock(other);
	if (!u)
		return ALLOW;
	struct unix_address *addr = BPF_CORE_READ(u, addr);
	if (!addr)
		return ALLOW;
	int alen = BPF_CORE_READ(addr, len);
	if (alen <= 2)
		return ALLOW;
	__u32 zero = 0;
	struct dbw_unix_conn *rec = bpf_map_lookup_elem(&DBW_UNIX_SCRATCH, &zero);
	if (!rec)
		return deny();
	__builtin_memset(&rec->orig, 0, sizeof(rec->orig));
	if (!read_name(&rec->orig, &addr->name[0].sun_path[0], (__u64)(alen - 2)))
		return ALLOW;
	if (bpf_map_lookup_elem(&DBW_UNIX_DENY, rec->orig.path))
		return deny();
	struct dbw_unix_config *cfg = bpf_map_lookup_elem(&DBW_UNIX_CONFIG, &zero);
	if ((!cfg || cfg->deny_db_patterns) && looks_like_db_socket(&rec->orig))
		return deny();
	return ALLOW;
}

char LICENSE[] SEC("license") = "GPL";
