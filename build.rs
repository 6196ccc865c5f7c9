//! Compiles the gRPC contract with protox (pure Rust), so no system `protoc` is needed, and
//! records the git commit the binary is built from for `numguard --version`; rebuilds
//! when the migrations change.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/numguard/v1/check.proto",
    "proto/numguard/v1/events.proto",
    "proto/numguard/v1/admin.proto",
    "proto/numguard/v1/alerts.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // sqlx::migrate! embeds the migrations; a new file alone must rebuild too.
    println!("cargo:rerun-if-changed=migrations");
    record_commit();
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    // Reflection serves this descriptor set so grpcurl-style tools work.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("numguard_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    // Decoding from one slice: see src/api/codec.rs.
    tonic_prost_build::configure()
        .codec_path("crate::api::codec::SliceCodec")
        .compile_fds(descriptors)?;
    Ok(())
}

/// Sets `NUMGUARD_COMMIT` to the commit's short hash and date ("unknown" outside a git
/// checkout) and rebuilds when the checked-out commit changes.
fn record_commit() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
    };
    let commit = match (
        git(&["rev-parse", "--short=12", "HEAD"]),
        git(&["log", "-1", "--format=%cd", "--date=short"]),
    ) {
        (Some(hash), Some(date)) => format!("commit {hash}, {date}"),
        _ => "commit unknown".to_string(),
    };
    println!("cargo:rustc-env=NUMGUARD_COMMIT={commit}");
    // Only paths that exist: a missing one would make cargo rerun this every build.
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"])
        .and_then(|r| git(&["rev-parse", "--git-path", &r]))
        .filter(|path| std::path::Path::new(path).exists())
    {
        println!("cargo:rerun-if-changed={reference}");
    }
    if let Some(packed) = git(&["rev-parse", "--git-path", "packed-refs"])
        .filter(|path| std::path::Path::new(path).exists())
    {
        println!("cargo:rerun-if-changed={packed}");
    }
}
