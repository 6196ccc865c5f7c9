//! Files that hold secrets or personal data (the SQLite database: watchlists, sealed sink
//! tokens, the access log; the key file; TLS keys; the providers file with client
//! secrets) are meant for the server's user alone: they are created 0600 (the database
//! 0640 if the operator lets the server's group read it), and a file that others can read
//! is named at start with a warning.

use std::path::Path;

/// Who may read a private file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readers {
    /// The server's user alone (0600).
    Owner,
    /// The server's user and its group (0640), e.g. for a backup user.
    OwnerAndGroup,
}

impl Readers {
    fn mode(self) -> u32 {
        match self {
            Readers::Owner => 0o600,
            Readers::OwnerAndGroup => 0o640,
        }
    }
}

/// Creates `path` empty with the mode `readers` allows, unless it exists.
pub fn create_private(path: &Path, readers: Readers) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, readers.mode());
    #[cfg(not(unix))]
    let _ = readers;
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Logs a warning when users beyond `readers` can read `path`.
pub fn warn_if_readable_by_others(path: &Path, what: &str, readers: Readers) {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        // Read bits of group and others that `readers` does not allow.
        let beyond = 0o044 & !readers.mode();
        if mode & beyond != 0 {
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
        create_private(&fresh, Readers::Owner).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let for_group = dir.path().join("group.db");
        create_private(&for_group, Readers::OwnerAndGroup).unwrap();
        let mode = std::fs::metadata(&for_group).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o640);
        let shared = dir.path().join("shared.db");
        std::fs::write(&shared, b"data").unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
        create_private(&shared, Readers::Owner).unwrap();
        assert_eq!(std::fs::read(&shared).unwrap(), b"data");
    }
}
