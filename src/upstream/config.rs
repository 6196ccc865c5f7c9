//! The upstream providers file (TOML): which operator's CAMARA API answers for which
//! carriers, and how to authenticate to it. `numguard upstreams` edits it; `serve` reads
//! it at start.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::domain::Field;
use crate::domain::FieldError;
use crate::domain::egress::EgressPolicy;

pub const DEFAULT_MAX_CONCURRENCY: usize = 8;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersFile {
    #[serde(default, rename = "provider")]
    pub providers: Vec<Provider>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub name: String,
    /// Carriers it serves, by id or by any spelling the carrier registry knows.
    pub carriers: Vec<String>,
    /// The operator's API root: `{base_url}/sim-swap/v2/check` and
    /// `{base_url}/number-recycling/v0.2/check`.
    pub base_url: String,
    pub auth: Auth,
    /// Calls in flight to this provider at most.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
}

fn default_concurrency() -> usize {
    DEFAULT_MAX_CONCURRENCY
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Auth {
    /// A static bearer token.
    Bearer { token: String },
    /// OAuth2 client credentials; tokens are cached until they expire.
    Oauth2 {
        token_url: String,
        client_id: String,
        client_secret: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid providers file: {message}")]
    Syntax { path: String, message: String },
    #[error("provider {name:?}: {error}")]
    Invalid { name: String, error: FieldError },
    #[error("provider {0:?} is listed twice")]
    Duplicate(String),
}

impl Provider {
    /// Checks the fields and normalises the URLs; `egress` says which addresses they may
    /// name.
    pub fn validated(mut self, egress: &EgressPolicy) -> Result<Provider, ConfigError> {
        let invalid = |error: FieldError| ConfigError::Invalid {
            name: self.name.clone(),
            error,
        };
        if self.name.trim().is_empty() {
            return Err(invalid(FieldError::new(Field::Name, "is empty")));
        }
        self.carriers = self
            .carriers
            .iter()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
        if self.carriers.is_empty() {
            return Err(invalid(FieldError::new(
                Field::Carriers,
                "names no carrier",
            )));
        }
        if self.max_concurrency == 0 {
            return Err(invalid(FieldError::new(
                Field::MaxConcurrency,
                "must be at least 1",
            )));
        }
        let base = egress
            .check_url(Field::BaseUrl, &self.base_url)
            .map_err(invalid)?;
        let token_url = match &self.auth {
            Auth::Oauth2 { token_url, .. } => Some(
                egress
                    .check_url(Field::TokenUrl, token_url)
                    .map_err(invalid)?,
            ),
            Auth::Bearer { .. } => None,
        };
        self.base_url = base.trim_end_matches('/').to_string();
        if let (Auth::Oauth2 { token_url: url, .. }, Some(checked)) = (&mut self.auth, token_url) {
            *url = checked;
        }
        Ok(self)
    }
}

impl ProvidersFile {
    /// Reads and checks `path`; a missing file is an empty list.
    pub fn load(path: &Path) -> Result<ProvidersFile, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let file: ProvidersFile = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        file.validated(&EgressPolicy::unrestricted())
    }

    /// Checks every provider (see [`Provider::validated`]) and that no name repeats.
    pub fn validated(self, egress: &EgressPolicy) -> Result<ProvidersFile, ConfigError> {
        let mut providers: Vec<Provider> = Vec::with_capacity(self.providers.len());
        for p in self.providers {
            let p = p.validated(egress)?;
            if providers.iter().any(|q| q.name == p.name) {
                return Err(ConfigError::Duplicate(p.name));
            }
            providers.push(p);
        }
        Ok(ProvidersFile { providers })
    }

    /// Writes the file readable by its owner only: it holds credentials.
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        let write = |source| ConfigError::Write {
            path: path.display().to_string(),
            source,
        };
        let text = toml::to_string_pretty(self)
            .map_err(|e| write(std::io::Error::other(e.to_string())))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(write)?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(write)
    }

    /// Adds `provider`, replacing one of the same name.
    pub fn upsert(&mut self, provider: Provider) -> Result<(), ConfigError> {
        // The server checks the URLs against its own egress policy when it loads the file.
        let provider = provider.validated(&EgressPolicy::unrestricted())?;
        match self.providers.iter_mut().find(|p| p.name == provider.name) {
            Some(existing) => *existing = provider,
            None => self.providers.push(provider),
        }
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.providers.len();
        self.providers.retain(|p| p.name != name);
        self.providers.len() < before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name: &str) -> Provider {
        Provider {
            name: name.into(),
            carriers: vec![" NTT Docomo ".into(), String::new()],
            base_url: "https://api.docomo.example/camara/".into(),
            auth: Auth::Oauth2 {
                token_url: "https://auth.docomo.example/token".into(),
                client_id: "id".into(),
                client_secret: "secret".into(),
                scope: None,
            },
            max_concurrency: 4,
        }
    }

    #[test]
    fn providers_are_checked_and_normalised() {
        let p = provider("docomo")
            .validated(&EgressPolicy::unrestricted())
            .unwrap();
        assert_eq!(p.carriers, ["NTT Docomo"]);
        assert_eq!(p.base_url, "https://api.docomo.example/camara");
        let plain = Provider {
            base_url: "http://api.example.com".into(),
            ..provider("x")
        };
        assert!(matches!(
            plain.validated(&EgressPolicy::unrestricted()),
            Err(ConfigError::Invalid { error, .. }) if error.field == Field::BaseUrl
        ));
        let none = Provider {
            carriers: vec![" ".into()],
            ..provider("x")
        };
        assert!(none.validated(&EgressPolicy::unrestricted()).is_err());
    }

    #[test]
    fn the_file_round_trips_and_refuses_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("upstreams.toml");
        assert_eq!(
            ProvidersFile::load(&path).unwrap(),
            ProvidersFile::default()
        );
        let mut file = ProvidersFile::default();
        file.upsert(provider("docomo")).unwrap();
        file.upsert(Provider {
            auth: Auth::Bearer {
                token: "static".into(),
            },
            carriers: vec!["KDDI".into()],
            ..provider("kddi")
        })
        .unwrap();
        file.upsert(Provider {
            max_concurrency: 2,
            ..provider("docomo")
        })
        .unwrap();
        file.save(&path).unwrap();
        let loaded = ProvidersFile::load(&path).unwrap();
        assert_eq!(loaded, file);
        assert_eq!(loaded.providers.len(), 2);
        assert_eq!(loaded.providers[0].max_concurrency, 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut file = loaded;
        assert!(file.remove("kddi"));
        assert!(!file.remove("kddi"));

        let twice = ProvidersFile {
            providers: vec![provider("a"), provider("a")],
        };
        assert!(
            matches!(twice.validated(&EgressPolicy::unrestricted()), Err(ConfigError::Duplicate(n)) if n == "a")
        );
        std::fs::write(&path, "[[provider]]\nname = 1\n").unwrap();
        assert!(matches!(
            ProvidersFile::load(&path),
            Err(ConfigError::Syntax { .. })
        ));
    }
}
