//! What the benchmarks share: a fresh database, the release server as a child process,
//! and connections to it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use sqlx::{Connection, PgConnection};
use tonic::transport::Channel;

/// A valid Japanese mobile number for each `i` (+81 90-1xxx-xxxx).
pub fn number(i: u64) -> String {
    format!("+81901{i:07}")
}

pub struct Server {
    child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh database for one run; a PostgreSQL one is dropped at the end.
pub struct BenchDb {
    pub url: String,
    _dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl BenchDb {
    /// `sqlite` (a temporary file) or `postgres` (a new database on
    /// NUMGUARD_BENCH_POSTGRES_URL, default the local server).
    pub async fn create(backend: &str) -> BenchDb {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            "sqlite" => BenchDb {
                url: format!("sqlite://{}", dir.path().join("bench.db").display()),
                _dir: dir,
                postgres: None,
            },
            "postgres" => {
                let admin = std::env::var("NUMGUARD_BENCH_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
                let name = format!("numguard_bench_{:08x}", rand::random::<u32>());
                let mut conn = PgConnection::connect(&admin).await.expect("PostgreSQL");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
                BenchDb {
                    url: format!("{base}/{name}"),
                    _dir: dir,
                    postgres: Some((admin, name)),
                }
            }
            other => panic!("unknown backend {other:?}; use sqlite or postgres"),
        }
    }

    pub async fn drop_database(&mut self) {
        if let Some((admin, name)) = self.postgres.take() {
            let mut conn = PgConnection::connect(&admin).await.expect("PostgreSQL");
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// Starts `numguard serve --dev` on an ephemeral port with `extra` arguments; the bound
/// address comes from its log.
pub fn start_server(database_url: &str, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_numguard"))
        .args([
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])
        .args(extra)
        .env("NUMGUARD_LOG", "warn,numguard::server=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start numguard serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines.next().expect("server exited").expect("log line");
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        url: format!("http://{addr}"),
    }
}

pub async fn connect(url: &str) -> Channel {
    Channel::from_shared(url.to_string())
        .expect("url")
        .connect()
        .await
        .expect("connect")
}
