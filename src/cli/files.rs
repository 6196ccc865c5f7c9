//! The files commands read and write, where `-` means stdin or stdout.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context;

/// Whether `path` is `-`, standard input or output.
pub fn is_std(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Opens `path` (or stdin for `-`) for reading; with its size where it has one (for
/// progress bars), else 0.
pub fn open_input(path: &Path) -> anyhow::Result<(Box<dyn Read + Send>, u64)> {
    if is_std(path) {
        return Ok((Box::new(std::io::stdin()), 0));
    }
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((Box::new(file), size))
}

/// Creates `path` (or stdout for `-`) for writing.
pub fn create_output(path: &Path) -> anyhow::Result<Box<dyn Write + Send>> {
    if is_std(path) {
        return Ok(Box::new(std::io::stdout()));
    }
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(Box::new(file))
}
