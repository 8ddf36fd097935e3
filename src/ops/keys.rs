//! API key operations: mint a random key (shown once), keep only its SHA-256, list, revoke.
//! The secret never leaves `create_key`'s return value: not in the store, not in an event.

use chrono::Duration;
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::agents::parse_agent_id;
use super::{invalid, Ops, OpsError};
use crate::core::agent::AgentStatus;
use crate::store::{ApiKeyId, ApiKeyInfo, Audit, NewApiKey};

/// Every key starts with this, so a leaked key is recognisable by secret scanners.
pub const API_KEY_PREFIX: &str = "cak_";
/// Random bytes in a key (256 bits).
const KEY_RANDOM_BYTES: usize = 32;
/// Characters of the key kept in clear to tell keys apart (prefix + 8 hex digits).
const DISPLAY_PREFIX_CHARS: usize = 12;
/// Longest key lifetime accepted, in days.
const KEY_TTL_DAYS_MAX: i64 = 3650;

/// `key create` / `POST /v1/keys`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyInput {
    pub agent_id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Lifetime in days; none means the key does not expire.
    #[serde(default)]
    pub expires_in_days: Option<i64>,
}

/// A freshly minted key: the only time the secret is available.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub info: ApiKeyInfo,
    pub secret: String,
}

/// SHA-256 of a presented key, as stored.
pub fn hash_key(secret: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, secret.as_bytes()).as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

fn mint_secret() -> Result<String, OpsError> {
    let mut random = [0u8; KEY_RANDOM_BYTES];
    SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| OpsError::Unavailable("no system randomness".into()))?;
    Ok(format!("{API_KEY_PREFIX}{}", hex(&random)))
}

impl Ops {
    pub async fn create_key(&self, input: KeyInput, audit: &Audit) -> Result<CreatedKey, OpsError> {
        let agent_id = parse_agent_id(&input.agent_id)?;
        let agent = self
            .store
            .get_agent(agent_id)
            .await?
            .ok_or_else(|| OpsError::Invalid(format!("unknown agent {agent_id}")))?;
        if agent.status == AgentStatus::Deleted {
            return Err(OpsError::Conflict(format!("agent {agent_id} is deleted")));
        }
        let now = super::now();
        let expires_at = match input.expires_in_days {
            None => None,
            Some(days) if (1..=KEY_TTL_DAYS_MAX).contains(&days) => {
                Some(now + Duration::days(days))
            }
            Some(days) => {
                return Err(invalid(format!(
                    "expires_in_days must be 1..={KEY_TTL_DAYS_MAX}, got {days}"
                )))
            }
        };
        let secret = mint_secret()?;
        let new = NewApiKey {
            id: ApiKeyId(Uuid::now_v7()),
            agent_id,
            name: input.name.unwrap_or_else(|| "default".into()),
            prefix: secret.chars().take(DISPLAY_PREFIX_CHARS).collect(),
            hash: hash_key(&secret),
            expires_at,
            at: now,
        };
        let info = self.store.create_api_key(new, audit).await?;
        Ok(CreatedKey { info, secret })
    }

    pub async fn list_keys(&self, agent_id: Option<&str>) -> Result<Vec<ApiKeyInfo>, OpsError> {
        let agent_id = agent_id.map(parse_agent_id).transpose()?;
        Ok(self.store.list_api_keys(agent_id).await?)
    }

    pub async fn revoke_key(&self, key_id: &str, audit: &Audit) -> Result<ApiKeyInfo, OpsError> {
        let id = Uuid::parse_str(key_id.trim()).map(ApiKeyId).map_err(|_| {
            OpsError::Invalid(format!("malformed key id {key_id:?}: expected a UUID"))
        })?;
        Ok(self.store.revoke_api_key(id, super::now(), audit).await?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn minted_keys_are_distinct_and_hash_stably() {
        let a = mint_secret().unwrap();
        let b = mint_secret().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(API_KEY_PREFIX));
        assert_eq!(a.len(), API_KEY_PREFIX.len() + 2 * KEY_RANDOM_BYTES);
        assert_eq!(hash_key(&a), hash_key(&a));
        assert_ne!(hash_key(&a), hash_key(&b));
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            hex(&hash_key("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
