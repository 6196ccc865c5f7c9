//! The server's secret key, kept in a file apart from the database (`--key-file`): it seals
//! webhook sink tokens (ChaCha20-Poly1305) and keys the access log's number hashes, so a
//! copy of the database alone reveals neither a token nor, by trying every number, who
//! was looked up. Replicas sharing a database share the file; the database records a check
//! value of the key it was first used with and refuses any other.

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::domain::auth::hex;
use crate::store::{AccessLogStore, StoreError};

/// The setting that holds the check value of the database's key.
const KEY_CHECK_SETTING: &str = "server_key_check";
/// What sealed tokens start with; a stored token without it predates sealing.
const SEALED_PREFIX: &str = "sealed:v1:";
const NONCE_BYTES: usize = 12;

/// Why the server's key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file exists but cannot be read.
    #[error("cannot read the key file {}: {source}", .path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// What reading said.
        source: std::io::Error,
    },
    /// A new file cannot be written.
    #[error("cannot create the key file {}: {source}", .path.display())]
    Create {
        /// The key file.
        path: PathBuf,
        /// What writing said.
        source: std::io::Error,
    },
    /// The file holds something else than a key.
    #[error("the key file {} does not hold 64 hexadecimal digits", .0.display())]
    Malformed(PathBuf),
    /// The file is missing, but the database was first used with one.
    #[error(
        "the key file {} is missing, but this database was first used with a key file: \
         copy that file here (every server of one database needs the same one), or name it \
         with --key-file",
        .0.display()
    )]
    Missing(PathBuf),
    /// The file holds another key than the database was first used with.
    #[error(
        "the key file {} is not the one this database was first used with; use that file \
         (every server of one database needs the same one)",
        .0.display()
    )]
    Mismatch(PathBuf),
    /// The database could not be asked.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A sealed value that does not open: damaged, or sealed under another key.
#[derive(Debug, thiserror::Error)]
#[error("a sealed sink token does not open with this server's key")]
pub struct Unsealable;

/// The server's key.
#[derive(Clone)]
pub struct ServerKey {
    key: [u8; 32],
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKey(..)")
    }
}

impl ServerKey {
    /// A key of this process alone (tests, benches): nothing sealed with it outlives it.
    pub fn ephemeral() -> ServerKey {
        ServerKey {
            key: rand::random(),
        }
    }

    /// The key in `path`, checked against the one `store` was first used with. A missing
    /// file is created (readable by its owner only) when the database has no key yet.
    pub async fn open(path: &Path, store: &dyn AccessLogStore) -> Result<ServerKey, KeyError> {
        let key = match std::fs::read_to_string(path) {
            Ok(text) => ServerKey::parse(path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if store.setting(KEY_CHECK_SETTING).await?.is_some() {
                    return Err(KeyError::Missing(path.to_path_buf()));
                }
                ServerKey::create(path)?
            }
            Err(source) => {
                return Err(KeyError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        crate::private_files::warn_if_readable_by_others(
            path,
            "the key file",
            crate::private_files::Readers::Owner,
        );
        let check = key.derive("key check");
        if store.setting_or_init(KEY_CHECK_SETTING, &check).await? != check {
            return Err(KeyError::Mismatch(path.to_path_buf()));
        }
        Ok(key)
    }

    fn parse(path: &Path, text: &str) -> Result<ServerKey, KeyError> {
        let text = text.trim();
        let malformed = || KeyError::Malformed(path.to_path_buf());
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| malformed())?;
        }
        Ok(ServerKey { key })
    }

    /// Writes a new key to `path`, unless another process got there first (then its key
    /// is used): the file is written aside and linked into place, which fails if it exists.
    fn create(path: &Path) -> Result<ServerKey, KeyError> {
        let failed = |source| KeyError::Create {
            path: path.to_path_buf(),
            source,
        };
        let key = ServerKey::ephemeral();
        let aside = path.with_extension(format!("new-{}", hex(&rand::random::<[u8; 4]>())));
        crate::private_files::create_private(&aside, crate::private_files::Readers::Owner)
            .map_err(failed)?;
        std::fs::write(&aside, format!("{}\n", hex(&key.key))).map_err(failed)?;
        let linked = std::fs::hard_link(&aside, path);
        let _ = std::fs::remove_file(&aside);
        match linked {
            Ok(()) => {
                tracing::warn!(
                    path = %path.display(),
                    "created the server's key file; keep it (and back it up) apart from the \
                     database: sink tokens cannot be used without it"
                );
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                ServerKey::parse(path, &text)
            }
            Err(e) => Err(failed(e)),
        }
    }

    /// A value derived from the key for one purpose.
    fn derive_bytes(&self, purpose: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    fn derive(&self, purpose: &str) -> String {
        hex(&self.derive_bytes(purpose))
    }

    /// The pepper of the access log's number hashes.
    pub fn access_log_pepper(&self) -> String {
        self.derive("access log pepper")
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&Key::from(self.derive_bytes("sink token sealing")))
    }

    /// `token` sealed for storing.
    pub fn seal(&self, token: &str) -> String {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let sealed = self
            .cipher()
            .encrypt(&Nonce::from(nonce), token.as_bytes())
            .unwrap_or_else(|_| unreachable!("sealing fails only past 256 GiB"));
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        format!("{SEALED_PREFIX}{}", hex(&bytes))
    }

    /// Whether a stored token is sealed (else it predates sealing).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED_PREFIX)
    }

    /// A stored token as sent to its sink; one stored before sealing is returned as it is.
    pub fn open_token(&self, stored: &str) -> Result<String, Unsealable> {
        let Some(sealed) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_string());
        };
        let bytes = unhex(sealed).ok_or(Unsealable)?;
        let (nonce, sealed) = bytes.split_at_checked(NONCE_BYTES).ok_or(Unsealable)?;
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| Unsealable)?;
        let plain = self
            .cipher()
            .decrypt(&Nonce::from(nonce), sealed)
            .map_err(|_| Unsealable)?;
        String::from_utf8(plain).map_err(|_| Unsealable)
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_open_only_under_their_key_and_old_plain_ones_pass() {
        let key = ServerKey::ephemeral();
        let sealed = key.seal("s3cret-token");
        assert!(ServerKey::is_sealed(&sealed));
        assert!(!sealed.contains("s3cret"));
        assert_ne!(
            sealed,
            key.seal("s3cret-token"),
            "each seal has its own nonce"
        );
        assert_eq!(key.open_token(&sealed).unwrap(), "s3cret-token");
        assert!(ServerKey::ephemeral().open_token(&sealed).is_err());
        let mut tampered = sealed.clone();
        let flipped = if tampered.pop() == Some('0') {
            '1'
        } else {
            '0'
        };
        tampered.push(flipped);
        assert!(key.open_token(&tampered).is_err());
        assert_eq!(key.open_token("plain-old").unwrap(), "plain-old");
        assert!(key.open_token("sealed:v1:zz").is_err());
    }

    #[test]
    fn a_key_file_holds_64_hex_digits() {
        let path = Path::new("k");
        let key = ServerKey::parse(path, &format!("{}\n", "ab".repeat(32))).unwrap();
        assert_eq!(key.key, [0xab; 32]);
        assert!(ServerKey::parse(path, "abc").is_err());
        assert!(ServerKey::parse(path, &"zz".repeat(32)).is_err());
    }

    #[test]
    fn a_new_key_file_is_private_and_a_racing_creator_uses_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("numguard.key");
        let first = ServerKey::create(&path).unwrap();
        let second = ServerKey::create(&path).unwrap();
        assert_eq!(first.key, second.key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
