/* Types shared by the Unix-socket programs (dbw_unix.bpf.c) and the daemon
 * (ebpf/common/src/unix.rs mirrors them, with layout tests on both sides).
 *
 * Every struct is fixed-size with explicit padding that both sides zero, so a key built in
 * the kernel and one built by the daemon compare equal byte for byte. */
#ifndef DBW_UNIX_H
#define DBW_UNIX_H

/* sizeof(((struct sockaddr_un *)0)->sun_path) */
#define DBW_SUN_PATH 108

/* A Unix socket path, NUL padded to 108 bytes: the key of DBW_UNIX_DENY (paths the guard
 * refuses in lsm mode). A path of 108 bytes without
 * a NUL matches nothing the daemon configures (paths are at most 107 bytes). */
struct dbw_unix_path {
	char path[DBW_SUN_PATH];
};

/* A path with its length, as handed to bpf_sock_addr_set_sun_path. */
struct dbw_unix_name {
	/* NUL padded. */
	char path[DBW_SUN_PATH];
	/* Bytes of `path` that count: strlen + 1, or 108 for a name without a NUL. */
	__u32 len;
};

/* Index 0 of DBW_UNIX_CONFIG. */
struct dbw_unix_config {
	/* 1 once the daemon filled every map; until then intercepted connects are refused. */
	__u32 ready;
	/* lsm mode: also refuse listeners whose bound name looks like a database socket
	 * (basename `.s.PGSQL.*`, `mysqld.sock`, `mysql.sock`) even if not configured. */
	__u32 deny_db_patterns;
	/* redirect mode: the daemon's resolver listener: every intercepted connect is rewritten to it. */
	struct dbw_unix_name resolver;
};

/* Caller identity, same layout as dbwarden_common::ConnInfo (80 bytes). */
struct dbw_conn_info {
	__u32 orig_addr[4];
	__u16 orig_port;
	__u16 family;
	__u32 tgid;
	__u32 pid;
	__u32 uid;
	__u32 gid;
	__u8 proto;
	__u8 _pad[3];
	__u64 cgroup_id;
	__u64 cookie;
	__u64 ktime_ns;
	char comm[16];
};

/* What the daemon learns about a redirected connect (DBW_UNIX_CONNS, keyed by the inode
 * of the agent's socket, which the daemon reads as the peer of the socket it accepted). */
struct dbw_unix_conn {
	struct dbw_conn_info info;
	/* The path the agent asked for, as written (maybe relative, maybe a symlink). */
	struct dbw_unix_name orig;
};

_Static_assert(sizeof(struct dbw_unix_path) == 108, "dbw_unix_path layout");
_Static_assert(sizeof(struct dbw_unix_name) == 112, "dbw_unix_name layout");
_Static_assert(sizeof(struct dbw_unix_config) == 120, "dbw_unix_config layout");
_Static_assert(sizeof(struct dbw_unix_conn) == 192, "dbw_unix_conn layout");
_Static_assert(sizeof(struct dbw_conn_info) == 80, "dbw_conn_info layout");

#endif
