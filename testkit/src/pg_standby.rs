//! A PostgreSQL primary and a streaming hot standby of it, each its own cluster on its own
//! loopback port, made for one test: `initdb` for the primary, `pg_basebackup -R` for the
//! standby, both in a temporary directory that is removed with them. PostgreSQL refuses
//! to run as root, so as root the clusters run as the `postgres` user.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};

use sqlx::{Connection, PgConnection};
use tempfile::TempDir;

/// The pair; dropped, both clusters are stopped and their files removed.
pub struct PgStandbyPair {
    dir: TempDir,
    bin: PathBuf,
    primary_port: u16,
    standby_port: u16,
}

/// The directory holding `initdb`, `pg_ctl` and `pg_basebackup`: `NUMGUARD_PG_BINDIR`, else
/// the newest `/usr/lib/postgresql/<version>/bin` (Debian's layout).
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("NUMGUARD_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's server binaries (/usr/lib/postgresql; see scripts/test)")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_basebackup").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("no /usr/lib/postgresql/<version>/bin with pg_basebackup")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

impl PgStandbyPair {
    /// Starts the primary, copies it into a standby with `pg_basebackup`, and starts the
    /// standby.
    pub fn start() -> PgStandbyPair {
        let dir = tempfile::Builder::new()
            .prefix("numguard-standby")
            .tempdir()
            .expect("temp dir");
        let pair = PgStandbyPair {
            bin: bin_dir(),
            primary_port: free_port(),
            standby_port: free_port(),
            dir,
        };
        if is_root() {
            run(Command::new("chown").args(["-R", "postgres", pair.dir_str()]));
        }
        let primary = pair.data("primary");
        pair.pg(
            "initdb",
            &["-D", &primary, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        pair.ctl_start("primary", pair.primary_port);
        let (standby, port) = (pair.data("standby"), pair.primary_port.to_string());
        pair.pg(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                &standby,
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        pair.start_standby();
        pair
    }

    fn dir_str(&self) -> &str {
        self.dir.path().to_str().expect("a UTF-8 temp path")
    }

    fn data(&self, name: &str) -> String {
        format!("{}/{name}", self.dir_str())
    }

    /// A PostgreSQL program, run as `postgres` when we are root.
    fn pg_command(&self, program: &str, args: &[&str]) -> Command {
        let path = self.bin.join(program);
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        command.args(args);
        command
    }

    fn pg(&self, program: &str, args: &[&str]) -> Output {
        run(&mut self.pg_command(program, args))
    }

    fn ctl_start(&self, name: &str, port: u16) {
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.dir_str()
        );
        let log = format!("{}/{name}.log", self.dir_str());
        let data = self.data(name);
        self.pg(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        );
    }

    /// The primary's URL for `database`.
    pub fn primary_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.primary_port
        )
    }

    /// The standby's URL for `database`.
    pub fn standby_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.standby_port
        )
    }

    /// Creates `database` on the primary (the standby replays it).
    pub async fn create_database(&self, database: &str) {
        let mut conn = PgConnection::connect(&self.primary_url("postgres"))
            .await
            .expect("connect to the primary");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut conn)
            .await
            .expect("create the database");
    }

    /// Runs one statement on the standby.
    pub async fn on_standby(&self, statement: &str) {
        let mut conn = PgConnection::connect(&self.standby_url("postgres"))
            .await
            .expect("connect to the standby");
        sqlx::query(sqlx::AssertSqlSafe(statement.to_string()))
            .execute(&mut conn)
            .await
            .expect("run on the standby");
    }

    /// Stops replaying WAL on the standby (it keeps receiving it): the standby lags.
    pub async fn pause_replay(&self) {
        self.on_standby("SELECT pg_wal_replay_pause()").await;
    }

    /// Replays again.
    pub async fn resume_replay(&self) {
        self.on_standby("SELECT pg_wal_replay_resume()").await;
    }

    /// Stops the standby cluster.
    pub fn stop_standby(&self) {
        let data = self.data("standby");
        self.pg("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
    }

    /// Starts the standby cluster (again).
    pub fn start_standby(&self) {
        self.ctl_start("standby", self.standby_port);
    }
}

impl Drop for PgStandbyPair {
    fn drop(&mut self) {
        for name in ["standby", "primary"] {
            let data = self.data(name);
            // Already stopped is fine; the files go with `dir`.
            let _ = self
                .pg_command("pg_ctl", &["-D", &data, "-m", "immediate", "stop"])
                .output();
        }
    }
}

/// Runs a command that must succeed.
fn run(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
