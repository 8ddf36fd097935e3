//! `Mcp-Session-Id` values that any adapter replica can check without shared memory: the
//! upstream server's own session id, bound to the MCP server and the agent that opened it, and
//! signed (HMAC-SHA256) with a key every replica shares. The upstream server keeps the session;
//! the adapter keeps nothing, so a session continues through whichever replica gets the request.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;

use crate::core::agent::AgentId;

/// Fewest key bytes accepted from a key file.
pub const SESSION_KEY_BYTES_MIN: usize = 32;
/// The generated key's file name under the data dir.
const KEY_FILE_NAME: &str = "mcp-session-key";
/// Version tag of the token format.
const PREFIX: &str = "cs1";

#[derive(Debug, thiserror::Error)]
pub enum SessionKeyError {
    #[error("mcpAdapter.sessionKeyFile {path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("mcpAdapter.sessionKeyFile {path}: needs at least {SESSION_KEY_BYTES_MIN} bytes")]
    TooShort { path: String },
    #[error("cannot generate a session key")]
    Random,
}

/// The key that signs and checks session ids.
pub struct SessionKey(hmac::Key);

impl SessionKey {
    pub fn from_bytes(bytes: &[u8]) -> SessionKey {
        SessionKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// The configured key file, or the data dir's key (made on first start, mode 0600).
    pub fn load(file: Option<&Path>, data_dir: &Path) -> Result<SessionKey, SessionKeyError> {
        let path: PathBuf = match file {
            Some(path) => path.to_owned(),
            None => {
                let path = data_dir.join(KEY_FILE_NAME);
                if !path.exists() {
                    create_key_file(&path)?;
                }
                path
            }
        };
        let io = |error| SessionKeyError::Io {
            path: path.display().to_string(),
            error,
        };
        let bytes = std::fs::read(&path).map_err(io)?;
        let key = String::from_utf8_lossy(&bytes).trim().as_bytes().to_vec();
        if key.len() < SESSION_KEY_BYTES_MIN {
            return Err(SessionKeyError::TooShort {
                path: path.display().to_string(),
            });
        }
        Ok(SessionKey::from_bytes(&key))
    }

    /// The session id the client sees for the upstream's `upstream` session.
    pub fn seal(&self, server: &str, agent: AgentId, upstream: &str) -> String {
        let payload = URL_SAFE_NO_PAD.encode(upstream.as_bytes());
        let tag = hmac::sign(&self.0, signed_bytes(server, agent, &payload).as_bytes());
        format!(
            "{PREFIX}.{payload}.{}",
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// The upstream session id inside `token`, if it was sealed by this key for this server and
    /// this agent; `None` otherwise (forged, altered, another agent's or another server's).
    pub fn open(&self, token: &str, server: &str, agent: AgentId) -> Option<String> {
        let mut parts = token.split('.');
        let (prefix, payload, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if prefix != PREFIX || parts.next().is_some() {
            return None;
        }
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        hmac::verify(
            &self.0,
            signed_bytes(server, agent, payload).as_bytes(),
            &tag,
        )
        .ok()?;
        String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

fn signed_bytes(server: &str, agent: AgentId, payload: &str) -> String {
    format!("{PREFIX}\0{server}\0{agent}\0{payload}")
}

/// Writes 32 random bytes (hex) to a new file readable by its owner only. Another process that
/// created it first wins: its key is used.
fn create_key_file(path: &Path) -> Result<(), SessionKeyError> {
    use std::io::Write as _;
    let mut raw = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| SessionKeyError::Random)?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let io = |error| SessionKeyError::Io {
        path: path.display().to_string(),
        error,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    match options.open(path) {
        Ok(mut file) => file.write_all(hex.as_bytes()).map_err(io),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn a_session_opens_only_for_its_server_and_agent_under_the_same_key() {
        let key = SessionKey::from_bytes(&[7u8; 32]);
        let (alice, bob) = (AgentId(Uuid::now_v7()), AgentId(Uuid::now_v7()));
        let token = key.seal("search", alice, "abc-123");
        assert_eq!(
            key.open(&token, "search", alice).as_deref(),
            Some("abc-123")
        );
        assert_eq!(key.open(&token, "search", bob), None);
        assert_eq!(key.open(&token, "files", alice), None);
        let other = SessionKey::from_bytes(&[8u8; 32]);
        assert_eq!(other.open(&token, "search", alice), None);
        let forged = token.replacen("cs1.", "cs1.QQ", 1);
        assert_eq!(key.open(&forged, "search", alice), None);
        assert!(token.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }
}
