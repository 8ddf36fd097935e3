//! Who is calling: the agent behind an API key, a JWT, or a client certificate, by the configured
//! mode. API keys are looked up by their SHA-256 (cached); JWTs are checked against pinned
//! asymmetric algorithms only. Takes credentials already read off the wire (`Credentials`);
//! knows nothing of headers, budgets or routing.

use std::sync::Arc;

use chrono::Utc;
use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::cache::TtlCache;
use super::error::Refusal;
use super::AdmissionLimits;
use crate::config::{AuthMode, GatewayConfig};
use crate::core::agent::AgentId;
use crate::ops::hash_key;
use crate::store::{hashes_equal, Store};

/// A cached API key: whose it is and until when it is valid.
#[derive(Clone)]
struct KeyEntry {
    agent_id: AgentId,
    hash: [u8; 32],
    expires_at: Option<chrono::DateTime<Utc>>,
}

/// What the connection's client certificate says about the caller (`mtls` mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIdentity {
    /// No certificate was presented.
    Absent,
    /// A certificate was presented but does not chain to the client CA.
    Untrusted,
    /// A trusted certificate that names no agent.
    Unnamed,
    /// A trusted certificate naming this agent id (as text).
    Named(String),
}

/// The credentials a caller presented, as its entry point read them.
#[derive(Debug, Clone)]
pub struct Credentials<'a> {
    /// A bearer token (`Authorization: Bearer`): an API key or a JWT.
    pub bearer: Option<&'a str>,
    /// An API key sent on its own (`X-API-Key`, the Anthropic SDK and v0.3 clients).
    pub api_key: Option<&'a str>,
    /// What a verified client certificate names; never taken from a header.
    pub client: ClientIdentity,
}

/// A credential that was sent and is not blank.
fn present(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|s| !s.is_empty())
}

pub(super) struct Authenticator {
    mode: AuthMode,
    store: Arc<dyn Store>,
    keys: TtlCache<[u8; 32], KeyEntry>,
    jwt: Option<JwtVerifier>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: String },
    #[error("{0}")]
    Key(String),
}

impl Authenticator {
    pub(super) fn new(
        config: &GatewayConfig,
        store: Arc<dyn Store>,
        limits: &AdmissionLimits,
    ) -> Result<Authenticator, AuthSetupError> {
        let jwt = match config.auth_mode {
            AuthMode::Jwt => Some(JwtVerifier::load(config)?),
            _ => None,
        };
        Ok(Authenticator {
            mode: config.auth_mode,
            store,
            keys: TtlCache::new(limits.cache_ttl, limits.cache_entries_max),
            jwt,
        })
    }

    /// The calling agent. In mtls mode only the verified client certificate counts.
    pub(super) async fn authenticate(
        &self,
        credentials: &Credentials<'_>,
    ) -> Result<AgentId, Refusal> {
        match self.mode {
            AuthMode::ApiKey => {
                let secret = present(credentials.bearer)
                    .or(present(credentials.api_key))
                    .ok_or_else(missing)?;
                self.api_key(secret).await
            }
            AuthMode::Jwt => match &self.jwt {
                Some(verifier) => verifier.verify(present(credentials.bearer).ok_or_else(missing)?),
                None => Err(Refusal::Unauthenticated(
                    "jwt verification is not configured",
                )),
            },
            AuthMode::Mtls => match &credentials.client {
                ClientIdentity::Absent => {
                    Err(Refusal::Unauthenticated("a client certificate is required"))
                }
                ClientIdentity::Untrusted => Err(Refusal::Unauthenticated(
                    "the client certificate is not issued by the trusted client CA",
                )),
                ClientIdentity::Unnamed => Err(Refusal::Unauthenticated(
                    "the client certificate names no agent",
                )),
                ClientIdentity::Named(id) => id
                    .parse()
                    .map_err(|_| Refusal::Unauthenticated("the client certificate names no agent")),
            },
        }
    }

    async fn api_key(&self, secret: &str) -> Result<AgentId, Refusal> {
        let hash = hash_key(secret);
        let entry = match self.keys.get(&hash) {
            Some(entry) => entry,
            None => {
                let found = self
                    .store
                    .find_api_key(&hash)
                    .await
                    .map_err(|e| Refusal::unavailable("store", e))?;
                let key = found.ok_or(Refusal::Unauthenticated("unknown API key"))?;
                if key.revoked_at.is_some() {
                    return Err(Refusal::Unauthenticated("the API key is revoked"));
                }
                let entry = KeyEntry {
                    agent_id: key.agent_id,
                    hash: key.hash,
                    expires_at: key.expires_at,
                };
                self.keys.insert(hash, entry.clone());
                entry
            }
        };
        if !hashes_equal(&entry.hash, &hash) {
            return Err(Refusal::Unauthenticated("unknown API key"));
        }
        if entry.expires_at.is_some_and(|t| t <= Utc::now()) {
            return Err(Refusal::Unauthenticated("the API key has expired"));
        }
        Ok(entry.agent_id)
    }

    /// Forgets every cached key of `agent` (a key was revoked or the agent changed).
    pub(super) fn invalidate_agent(&self, agent: AgentId) {
        self.keys
            .invalidate_where(|_, entry| entry.agent_id == agent);
    }
}

fn missing() -> Refusal {
    Refusal::Unauthenticated("missing credentials: send Authorization: Bearer <key> or X-API-Key")
}

#[derive(Deserialize)]
struct AgentClaims {
    sub: Option<String>,
    /// v0.3 tokens name the agent here.
    agent_id: Option<String>,
}

/// Verifies agent JWTs: RS256 / ES256 only, `exp` required, `nbf`, `iss`, `aud` checked.
struct JwtVerifier {
    keys: Vec<(Option<String>, DecodingKey, Algorithm)>,
    issuer: Option<String>,
    audience: Option<String>,
}

impl JwtVerifier {
    fn load(config: &GatewayConfig) -> Result<JwtVerifier, AuthSetupError> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| AuthSetupError::Read {
                path: path.display().to_string(),
                error: e.to_string(),
            })
        };
        let mut keys = Vec::new();
        if let Some(path) = &config.jwt.public_key_file {
            let pem = read(path)?;
            if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                keys.push((None, key, Algorithm::RS256));
            } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                keys.push((None, key, Algorithm::ES256));
            } else {
                return Err(AuthSetupError::Key(format!(
                    "{} is neither an RSA nor a P-256 public key in PEM",
                    path.display()
                )));
            }
        }
        if let Some(path) = &config.jwt.jwks_file {
            let set: JwkSet = serde_json::from_slice(&read(path)?).map_err(|e| {
                AuthSetupError::Key(format!("{}: invalid JWKS: {e}", path.display()))
            })?;
            for jwk in &set.keys {
                let alg = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    _ => continue,
                };
                let key = DecodingKey::from_jwk(jwk)
                    .map_err(|e| AuthSetupError::Key(format!("{}: {e}", path.display())))?;
                keys.push((jwk.common.key_id.clone(), key, alg));
            }
        }
        if keys.is_empty() {
            return Err(AuthSetupError::Key(
                "authMode jwt needs gateway.jwt.publicKeyFile or jwksFile with an RSA or P-256 key"
                    .into(),
            ));
        }
        Ok(JwtVerifier {
            keys,
            issuer: config.jwt.issuer.clone(),
            audience: config.jwt.audience.clone(),
        })
    }

    fn verify(&self, token: &str) -> Result<AgentId, Refusal> {
        let invalid = Refusal::Unauthenticated("invalid token");
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Refusal::Unauthenticated("malformed token"))?;
        for (kid, key, alg) in &self.keys {
            if header.alg != *alg || (kid.is_some() && header.kid.is_some() && kid != &header.kid) {
                continue;
            }
            let mut validation = Validation::new(*alg);
            validation.algorithms = vec![*alg];
            validation.set_required_spec_claims(&["exp"]);
            validation.validate_nbf = true;
            match &self.issuer {
                Some(iss) => validation.set_issuer(&[iss]),
                None => validation.iss = None,
            }
            match &self.audience {
                Some(aud) => validation.set_audience(&[aud]),
                None => validation.validate_aud = false,
            }
            let Ok(data) = jsonwebtoken::decode::<AgentClaims>(token, key, &validation) else {
                continue;
            };
            let subject = data
                .claims
                .agent_id
                .or(data.claims.sub)
                .ok_or(Refusal::Unauthenticated("the token names no agent"))?;
            return subject
                .parse()
                .map_err(|_| Refusal::Unauthenticated("the token's agent id is not a UUID"));
        }
        Err(invalid)
    }
}
