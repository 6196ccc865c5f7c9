//! Fresh databases for tests: a SQLite file in a temporary directory, or a PostgreSQL
//! database `numguard_test_<random>` created on the server named by
//! `NUMGUARD_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and dropped when the test ends. PostgreSQL being unreachable fails the test; it is
//! never skipped.

use sqlx::{Connection, PgConnection};
use tempfile::TempDir;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" => Ok(Backend::Postgres),
            other => Err(format!("unknown backend {other:?}; use sqlite or postgres")),
        }
    }
}

/// A fresh, empty database, dropped (PostgreSQL) or deleted (SQLite) when this is dropped.
pub struct TestDb {
    pub url: String,
    pub backend: Backend,
    _dir: Option<TempDir>,
    /// PostgreSQL: the admin URL and the database to drop.
    pg: Option<(String, String)>,
}

pub fn postgres_admin_url() -> String {
    std::env::var("NUMGUARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Splits `scheme://[user@]host[:port]/db?query` into (`scheme://[user@]`, `host[:port]`,
/// `/db?query`).
fn split_url(url: &str) -> (&str, &str, &str) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |j| start + j);
    let host_start = url[start..end].rfind('@').map_or(start, |k| start + k + 1);
    (&url[..host_start], &url[host_start..end], &url[end..])
}

pub fn host_port(url: &str) -> String {
    split_url(url).1.to_string()
}

/// The test PostgreSQL server's address (for a proxy in front of it).
pub fn postgres_addr() -> std::net::SocketAddr {
    let url = postgres_admin_url();
    let host_port = host_port(&url).replace("localhost", "127.0.0.1");
    let host_port = if host_port.contains(':') {
        host_port
    } else {
        format!("{host_port}:5432")
    };
    host_port
        .parse()
        .expect("NUMGUARD_TEST_POSTGRES_URL names host:port")
}

/// The same URL pointing at another host:port.
pub fn with_host(url: &str, host_port: &str) -> String {
    let (head, _, tail) = split_url(url);
    format!("{head}{host_port}{tail}")
}

/// The same server and credentials, another database.
pub fn with_database(url: &str, database: &str) -> String {
    let (head, host, tail) = split_url(url);
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{head}{host}/{database}{query}")
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                TestDb {
                    url: format!("sqlite://{}", dir.path().join("numguard.db").display()),
                    backend,
                    _dir: Some(dir),
                    pg: None,
                }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let name = format!("numguard_test_{:016x}", rand::random::<u64>());
                let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is required for this test and is unreachable at {admin}: \
                         {e}. Start it (see .ci/run) or set NUMGUARD_TEST_POSTGRES_URL."
                    )
                });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let _ = conn.close().await;
                TestDb {
                    url: with_database(&admin, &name),
                    backend,
                    _dir: None,
                    pg: Some((admin, name)),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg.take() else {
            return;
        };
        // Drop runs inside the test's runtime; a separate thread with its own runtime can
        // block on the async DROP.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: could not drop a test database");
        }
    }
}

#[cfg(test)]
#[test]
fn urls_get_their_database_replaced() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}
