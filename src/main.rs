//! The `numguard` command: the server and its command-line clients (see `numguard::cli`).

use std::process::ExitCode;

use clap::Parser;

/// glibc's allocator spent a quarter of an audit's server time in malloc and free, and
/// kept freed memory from many threads' arenas; mimalloc does neither.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match numguard::cli::Cli::parse().run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
