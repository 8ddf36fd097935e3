//! The `gateway` section: auth mode, TLS, listen address, routes, limits and the seeds' tuning keys.
//! Types, defaults and derived values only; loading is in `load.rs`, checks in `validate.rs`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::resolve::Unresolved;
use super::secret::Secret;

/// How the gateway authenticates an agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// RS256/ES256 JWT in `Authorization: Bearer`, checked against `gateway.jwt`.
    Jwt,
    /// Client certificate verified against `gateway.tls.clientCaFile`.
    Mtls,
    /// The agent's API key in `Authorization: Bearer` or `X-API-Key` (binary default).
    #[default]
    ApiKey,
}

/// Which usage format an upstream speaks (decides how usage is read from its responses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// OpenAI-compatible API (chat completions, responses, embeddings).
    Openai,
    /// Anthropic Messages API.
    Anthropic,
    /// Any other HTTP API: charged per call from the pricebook, no token usage parsed.
    Generic,
}

/// What to do with a request whose (provider, model) has no price in the pricebook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownPrice {
    /// Deny with reason `unknown_price` (default: an unpriced call is never free).
    #[default]
    Deny,
    /// Allow and meter the tokens at zero cost, marking the event.
    Allow,
}

/// The `gateway` section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayConfig {
    /// Authentication mode: `jwt`, `mtls` or `api_key`. The binary defaults to `api_key` (the
    /// embedded first run); the Helm chart's default is `jwt`.
    pub auth_mode: AuthMode,
    /// IP address the HTTPS (or, without TLS, HTTP) listener binds. Unset: `0.0.0.0` when TLS
    /// is on, `127.0.0.1` when it is off. A non-loopback address without TLS is refused unless
    /// `tls.enabled` is explicitly `false`.
    pub listen_address: Option<IpAddr>,
    /// TLS for the gateway listener.
    pub tls: GatewayTls,
    /// Ports (the chart's `gateway.service.*` keys).
    pub service: GatewayService,
    /// JWT verification, used when `authMode` is `jwt`.
    pub jwt: JwtConfig,
    /// Upstreams by path prefix: `/openai/...` goes to the route whose prefix is `/openai`.
    pub routes: Vec<Route>,
    /// Hosts (`api.example.com` or `host:port`) that v0.3's `X-Caracal-Target-URL` header may
    /// name. Empty (default): the header is refused. Never an open proxy.
    pub target_url_allowlist: Vec<String>,
    /// Largest request body accepted, in bytes (default 10 MiB); larger: 413.
    pub body_bytes_max: usize,
    /// `X-Caracal-Nonce` + `X-Caracal-Timestamp` replay protection.
    pub replay_protection: ReplayProtection,
    /// `deny` (default) or `allow` a call whose model or tool has no price.
    pub unknown_price: UnknownPrice,
    /// The production guide's tuning keys (same names, same defaults).
    pub config: GatewayTuning,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            auth_mode: AuthMode::default(),
            listen_address: None,
            tls: GatewayTls::default(),
            service: GatewayService::default(),
            jwt: JwtConfig::default(),
            routes: Vec::new(),
            target_url_allowlist: Vec::new(),
            body_bytes_max: 10 * 1024 * 1024,
            replay_protection: ReplayProtection::default(),
            unknown_price: UnknownPrice::default(),
            config: GatewayTuning::default(),
        }
    }
}

impl GatewayConfig {
    /// Whether the listener speaks TLS: `tls.enabled`, or when unset, whether a certificate
    /// is configured.
    pub fn tls_enabled(&self) -> bool {
        self.tls.enabled.unwrap_or(self.tls.cert_file.is_some())
    }

    /// The IP address to bind: `listenAddress`, else `0.0.0.0` with TLS, `127.0.0.1` without.
    pub fn listen_ip(&self) -> IpAddr {
        self.listen_address.unwrap_or(if self.tls_enabled() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        })
    }
}

/// `gateway.tls`. The chart's `tls.secretName` is not application config: the chart mounts the
/// secret and renders the file paths below.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayTls {
    /// `true`: serve HTTPS (certFile and keyFile required); `false`: plain HTTP. Unset: on iff
    /// `certFile` is set.
    pub enabled: Option<bool>,
    /// PEM certificate chain of the gateway (`server.crt`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the gateway (`server.key`).
    pub key_file: Option<PathBuf>,
    /// PEM CA bundle that client certificates must chain to (`ca.crt`); required for `mtls`.
    pub client_ca_file: Option<PathBuf>,
}

/// `gateway.service`: the gateway's ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayService {
    /// Port of the proxy listener (HTTPS when TLS is on), also serving `/health` and `/ready`.
    pub https_port: u16,
    /// Port of the process's telemetry listener (`/metrics`, `/health`, `/ready`), unless
    /// `telemetry.port` is set. The chart's `service.type` is not application config.
    pub metrics_port: u16,
}

impl Default for GatewayService {
    fn default() -> Self {
        Self {
            https_port: 8443,
            metrics_port: 9090,
        }
    }
}

/// `gateway.jwt`: how agent JWTs are verified (`authMode: jwt`). Set exactly one key source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct JwtConfig {
    /// PEM public key (RSA or P-256) that signs agent tokens (the seeds' `jwt_public.pem`).
    pub public_key_file: Option<PathBuf>,
    /// JWKS file (JSON) holding the accepted public keys, selected by `kid`.
    pub jwks_file: Option<PathBuf>,
    /// Required `iss` claim, when set.
    pub issuer: Option<String>,
    /// Required `aud` claim, when set.
    pub audience: Option<String>,
}

/// One entry of `gateway.routes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Route {
    /// Path prefix that selects this route, starting with `/` (e.g. `/openai`). The prefix is
    /// removed before forwarding: `/openai/v1/chat/completions` → `{upstream}/v1/chat/completions`.
    pub prefix: String,
    /// Base URL of the upstream, `http://` or `https://` (e.g. `https://api.openai.com`).
    pub upstream: String,
    /// `openai`, `anthropic` or `generic`: how usage is read from the upstream's responses.
    pub provider: Provider,
    /// File holding the provider credential that replaces the agent's (trailing newline
    /// removed). Exclusive with `credentialEnv`. Neither: nothing is sent upstream.
    pub credential_file: Option<PathBuf>,
    /// Name of the environment variable holding the provider credential (e.g.
    /// `OPENAI_API_KEY`). Only the gateway role needs it set (it refuses to start without
    /// it); admin commands and the other roles run without it.
    pub credential_env: Option<String>,
    /// The credential read from `credentialFile` or `credentialEnv` at load time.
    #[serde(skip)]
    pub(crate) credential: Option<Secret>,
    /// Why the credential could not be read at load time, if it could not.
    #[serde(skip)]
    pub(crate) unresolved: Option<Unresolved>,
}

impl Route {
    /// The provider credential, read at load time from `credentialFile` or `credentialEnv`.
    pub fn credential(&self) -> Option<&Secret> {
        self.credential.as_ref()
    }

    /// A route with every key present: the template for checking list items' keys.
    pub(crate) fn template() -> Self {
        Self {
            prefix: "/".into(),
            upstream: "https://example.com".into(),
            provider: Provider::Generic,
            credential_file: None,
            credential_env: None,
            credential: None,
            unresolved: None,
        }
    }
}

/// `gateway.replayProtection`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplayProtection {
    /// When true, every proxied request must carry a fresh `X-Caracal-Nonce` and
    /// `X-Caracal-Timestamp`; nonces are shared across replicas through the spend cache.
    pub enabled: bool,
    /// Accepted clock skew and nonce memory, in seconds (default 300).
    pub window_seconds: u64,
}

impl Default for ReplayProtection {
    fn default() -> Self {
        Self {
            enabled: false,
            window_seconds: 300,
        }
    }
}

/// `gateway.config`: the production guide's tuning block, key for key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewayTuning {
    /// Database connections per process before overflow (default 20).
    pub db_pool_size: u32,
    /// Extra connections allowed above `dbPoolSize` under load (default 10; 0 allowed): a
    /// process opens at most `dbPoolSize + dbMaxOverflow` Postgres connections, on demand, and
    /// keeps them open once made (no separate overflow pool is closed after use).
    pub db_max_overflow: u32,
    /// Seconds to wait for a free database connection before failing closed (default 30).
    pub db_pool_timeout: u64,
    /// In-flight request cap per gateway process; over it: 503 `overloaded` with
    /// `Retry-After` (default 1000).
    pub max_concurrent_requests: u32,
    /// Seconds to response headers and between body chunks from the upstream; never a cap
    /// on the length of a healthy stream (default 30).
    pub request_timeout: u64,
    /// Seconds a cached policy or API key stays valid without an invalidation event (default
    /// 60). The key is spelled `policyCacheTTL`, as in the seeds.
    #[serde(rename = "policyCacheTTL")]
    pub policy_cache_ttl: u64,
    /// Most entries in the policy cache and in the key cache (default 50000).
    pub policy_cache_max_size: u64,
    /// Seconds before an unsettled provisional charge (reservation) expires (default 300).
    pub provisional_charge_expiration: u64,
    /// Seconds between sweeps of expired provisional charges (default 30).
    pub provisional_charge_cleanup_interval: u64,
}

impl Default for GatewayTuning {
    fn default() -> Self {
        Self {
            db_pool_size: 20,
            db_max_overflow: 10,
            db_pool_timeout: 30,
            max_concurrent_requests: 1000,
            request_timeout: 30,
            policy_cache_ttl: 60,
            policy_cache_max_size: 50_000,
            provisional_charge_expiration: 300,
            provisional_charge_cleanup_interval: 30,
        }
    }
}
