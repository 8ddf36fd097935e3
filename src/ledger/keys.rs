//! The signing key: read from `consumers.ledgerWriter.merkle.signingKeyFile` (SEC1 or
//! PKCS#8 PEM), or, when unset, from `<dataDir>/merkle-signing-key.pem`, made on first use
//! (owner-only permissions) only in the embedded default: on a shared store every replica must
//! sign with the operator's key, so none is made there. The key never reaches a log or an
//! error message; its id does.

use std::path::{Path, PathBuf};

use crate::core::checkpoint::SigningKey;

/// File name of the embedded default signing key inside the data directory.
pub const DEFAULT_KEY_FILE: &str = "merkle-signing-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the signing key {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("the signing key {path} is not an ECDSA P-256 private key in PEM (SEC1 or PKCS#8)")]
    Parse { path: PathBuf },
    #[error("cannot write the signing key {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error(
        "consumers.ledgerWriter.merkle.signingKeyFile is required with postgresql (every \
             ledger replica must sign with the same key, and none is made outside the embedded \
             default): make one with `caracal merkle keygen --out FILE` and set it"
    )]
    Required,
}

/// Where the key a ledger role or `merkle backfill` signs with comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The embedded default (SQLite store): the data dir's key, made on first use.
    Embedded,
    /// A shared store (Postgres): the configured file, or a data dir key that already exists;
    /// never a new one.
    Shared,
}

/// The signing key for `source`: the configured file when set; else the data dir's key, made
/// when missing only for [`KeySource::Embedded`].
pub fn signing_key(
    configured: Option<&Path>,
    data_dir: &Path,
    source: KeySource,
) -> Result<SigningKey, KeyFileError> {
    let default = data_dir.join(DEFAULT_KEY_FILE);
    match (configured, source) {
        (Some(path), _) => load(path),
        (None, KeySource::Shared) if default.exists() => load(&default),
        (None, KeySource::Shared) => Err(KeyFileError::Required),
        (None, KeySource::Embedded) => load_or_create(None, data_dir),
    }
}

/// Loads the configured key, or the data directory's default (made when missing).
fn load_or_create(configured: Option<&Path>, data_dir: &Path) -> Result<SigningKey, KeyFileError> {
    match configured {
        Some(path) => load(path),
        None => {
            let path = data_dir.join(DEFAULT_KEY_FILE);
            if path.exists() {
                load(&path)
            } else {
                let (key, pem) = SigningKey::generate().map_err(|e| KeyFileError::Write {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                write_new(&path, &pem)?;
                tracing::info!(path = %path.display(), key_id = %key.verifying_key().key_id(), "made a new Merkle signing key");
                Ok(key)
            }
        }
    }
}

/// Reads a PEM private key.
pub fn load(path: &Path) -> Result<SigningKey, KeyFileError> {
    let pem = std::fs::read(path).map_err(|e| KeyFileError::Read {
        path: path.to_owned(),
        reason: e.kind().to_string(),
    })?;
    SigningKey::from_pem(&pem).map_err(|_| KeyFileError::Parse {
        path: path.to_owned(),
    })
}

/// Writes `pem` to a file that must not exist yet, readable by its owner only.
pub fn write_new(path: &Path, pem: &str) -> Result<(), KeyFileError> {
    use std::io::Write;
    let fail = |e: std::io::Error| KeyFileError::Write {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(fail)?;
    file.write_all(pem.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_key_is_made_in_the_data_dir_only_for_the_embedded_default() {
        let dir = tempfile::tempdir().unwrap();
        let refused = signing_key(None, dir.path(), KeySource::Shared);
        assert!(matches!(refused, Err(KeyFileError::Required)));
        assert!(
            !dir.path().join(DEFAULT_KEY_FILE).exists(),
            "a key was minted"
        );
        let made = signing_key(None, dir.path(), KeySource::Embedded).unwrap();
        let again = signing_key(None, dir.path(), KeySource::Shared).unwrap();
        assert_eq!(
            made.verifying_key().key_id(),
            again.verifying_key().key_id(),
            "an existing data dir key is used, not replaced"
        );
    }
}
