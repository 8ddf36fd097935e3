//! `agent token`: signs an RS256 or ES256 JWT for an agent with an operator's private key, for
//! the gateway's `jwt` auth mode. Never accepts HMAC or `none`; the key is read, used, dropped.

use std::path::Path;

use chrono::{Duration, Utc};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::Serialize;
use uuid::Uuid;

use super::{Ops, OpsError};
use crate::core::agent::AgentStatus;

/// Longest token lifetime `agent token` issues, in seconds (30 days).
pub const TOKEN_TTL_SECONDS_MAX: i64 = 30 * 24 * 3600;

/// What to sign.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub agent_id: String,
    pub algorithm: String,
    pub ttl_seconds: i64,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub key_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct Claims<'a> {
    sub: &'a str,
    /// v0.3 clients read the agent from this claim.
    agent_id: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

fn algorithm(name: &str) -> Result<Algorithm, OpsError> {
    match name.to_ascii_uppercase().as_str() {
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        other => Err(OpsError::Invalid(format!(
            "unsupported algorithm {other:?}: expected RS256 or ES256"
        ))),
    }
}

fn encoding_key(alg: Algorithm, pem: &[u8], path: &Path) -> Result<EncodingKey, OpsError> {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem),
        _ => EncodingKey::from_rsa_pem(pem),
    };
    key.map_err(|e| {
        let hint = if alg == Algorithm::ES256 {
            " (ES256 keys must be PKCS#8: `openssl pkcs8 -topk8 -nocrypt -in key.pem`)"
        } else {
            ""
        };
        OpsError::Invalid(format!(
            "cannot use {} as a private key: {e}{hint}",
            path.display()
        ))
    })
}

impl Ops {
    /// Signs a token for an existing, active agent.
    pub async fn agent_token(
        &self,
        req: &TokenRequest,
        key_path: &Path,
    ) -> Result<String, OpsError> {
        let alg = algorithm(&req.algorithm)?;
        if !(1..=TOKEN_TTL_SECONDS_MAX).contains(&req.ttl_seconds) {
            return Err(OpsError::Invalid(format!(
                "ttl must be 1..={TOKEN_TTL_SECONDS_MAX} seconds, got {}",
                req.ttl_seconds
            )));
        }
        let agent = self.get_agent(&req.agent_id).await?;
        if agent.status != AgentStatus::Active {
            return Err(OpsError::Conflict(format!(
                "agent {} is {}",
                agent.id,
                agent.status.as_str()
            )));
        }
        let pem = std::fs::read(key_path).map_err(|e| {
            OpsError::Invalid(format!(
                "cannot read private key {}: {e}",
                key_path.display()
            ))
        })?;
        let key = encoding_key(alg, &pem, key_path)?;
        let now = Utc::now();
        let id = agent.id.to_string();
        let claims = Claims {
            sub: &id,
            agent_id: &id,
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: (now + Duration::seconds(req.ttl_seconds)).timestamp(),
            jti: Uuid::now_v7().to_string(),
            iss: req.issuer.as_deref(),
            aud: req.audience.as_deref(),
        };
        let mut header = Header::new(alg);
        header.kid = req.key_id.clone();
        encode(&header, &claims, &key)
            .map_err(|e| OpsError::Invalid(format!("cannot sign token: {e}")))
    }
}
