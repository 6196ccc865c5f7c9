//! What numguard's integration tests (`tests/it`) and benchmarks (`benches/`) share: fresh
//! databases on both backends, the server in this process or as the real binary in a child
//! process, the fixtures most tests build, and fake peers (an operator's CAMARA API, a
//! webhook receiver, a TCP proxy that can be cut).
//!
//! A crate of its own because benches cannot reach modules under `tests/`.

pub mod bench;
pub mod camara;
pub mod db;
pub mod fixtures;
pub mod operator;
pub mod pg_standby;
pub mod process;
pub mod proxy;
pub mod receiver;
pub mod server;

pub use db::{Backend, TestDb};
pub use fixtures::*;
pub use server::TestServer;

/// Runs an async test body once per backend: `on_both_backends!(name, ...)` expects an
/// `async fn name(backend: Backend)` and makes tests `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::Backend::Sqlite).await
                }

                #[tokio::test]
                async fn postgres() {
                    super::$name($crate::Backend::Postgres).await
                }
            }
        )*
    };
}
