//! Files that hold secrets or personal data (the SQLite database: watchlists, sink tokens,
//! the access log's pepper; TLS keys; the providers file with client secrets) are meant
//! for the server's user alone: the database is created 0600, and a file that others can
//! read is named at start with a warning.

use std::path::Path;

/// Creates `path` empty and readable by its owner only, unless it exists.
pub fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Logs a warning when users other than the owner can read `path`.
pub fn warn_if_readable_by_others(path: &Path, what: &str) {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o044 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:o}", mode & 0o777),
                "{what} is readable by other users; it holds secrets or personal data \
                 (chmod 600)"
            );
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_new_file_is_the_owner_s_alone_and_an_existing_one_is_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.db");
        create_private(&fresh).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let shared = dir.path().join("shared.db");
        std::fs::write(&shared, b"data").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_private(&shared).unwrap();
        assert_eq!(std::fs::read(&shared).unwrap(), b"data");
    }
}
