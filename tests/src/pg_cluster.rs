//! Throwaway PostgreSQL clusters for tests that need a server of their own: a port the shared
//! server does not use, a socket directory of its own, or `peer` authentication. Each one is
//! created with `initdb` in a temp dir, run as the `postgres` user, and stopped on drop.
//! Loopback and Unix sockets only.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

/// PostgreSQL's binaries on Debian.
const BIN: &str = "/usr/lib/postgresql/15/bin";

/// A running throwaway cluster.
pub struct PgCluster {
    /// Data and log directory.
    pub dir: PathBuf,
    /// TCP port on 127.0.0.1 (also the number in the socket name).
    pub port: u16,
    /// Directory holding `.s.PGSQL.<port>`.
    pub socket_dir: PathBuf,
    /// Whether `socket_dir` was created here (and is removed on drop).
    own_socket_dir: bool,
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl PgCluster {
    /// Starts a cluster on 127.0.0.1:`port` with its socket in `socket_dir` (created if
    /// missing, world-traversable). `hba` is the whole pg_hba.conf.
    pub fn start(tag: &str, port: u16, socket_dir: &Path, hba: &str) -> PgCluster {
        let dir = std::env::temp_dir().join(format!("dbwt-pg-{tag}-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let own_socket_dir = !socket_dir.exists();
        if own_socket_dir {
            // A directory of our own: the server writes its socket and lock file there.
            std::fs::create_dir_all(socket_dir).unwrap();
            run(
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(socket_dir),
                "chown the socket dir",
            );
        }
        run(
            Command::new("chown").arg("postgres:postgres").arg(&dir),
            "chown the cluster dir",
        );
        let data = dir.join("data");
        run(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(format!("{BIN}/initdb"))
                .args(["-D"])
                .arg(&data)
                .args(["--auth=trust", "-E", "UTF8", "--locale=C"]),
            "initdb",
        );
        std::fs::write(data.join("pg_hba.conf"), hba).unwrap();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c shared_buffers=16MB -c max_connections=40",
            socket_dir.display()
        );
        run(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(format!("{BIN}/pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.join("log"))
                .args(["-o", &opts, "-w", "-t", "60", "start"]),
            "pg_ctl start",
        );
        let c = PgCluster {
            dir,
            port,
            socket_dir: socket_dir.to_path_buf(),
            own_socket_dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !c.socket().exists() {
            assert!(
                Instant::now() < deadline,
                "cluster socket {} never appeared",
                c.socket().display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        c
    }

    /// The Unix socket path.
    pub fn socket(&self) -> PathBuf {
        self.socket_dir.join(format!(".s.PGSQL.{}", self.port))
    }

    /// Runs SQL directly (not through dbwarden) as the postgres OS user over the socket.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                "psql",
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
            ])
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "direct psql on the throwaway cluster failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{BIN}/pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.own_socket_dir {
            let _ = std::fs::remove_dir_all(&self.socket_dir);
        }
    }
}
