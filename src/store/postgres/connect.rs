//! From `postgresql.*` to a connection pool: the `tokio_postgres::Config` (from the URL or from
//! parts, never by pasting a password into a URL), TLS with libpq's `sslmode` semantics over
//! rustls (ring), and the deadpool pool sized by `gateway.config`. Opens no transaction and
//! knows no table; nothing here may put a password into an error or a log line.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{GatewayTuning, PgSsl, PgSslMode, PostgresConfig};
use crate::store::StoreError;

/// How long opening one connection (TCP, TLS, authentication) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle time before TCP keepalives start, so a dead server is noticed on idle connections.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// Everything needed to open connections: the libpq-style config and the TLS connector.
#[derive(Clone)]
pub struct ConnectSpec {
    pub pg: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    /// `host:port/database`, for messages (no user, no password).
    pub target: String,
}

/// Pool limits, from `gateway.config.dbPoolSize` / `dbPoolTimeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolLimits {
    pub connections_max: usize,
    pub wait_timeout: Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            connections_max: 20,
            wait_timeout: Duration::from_secs(30),
        }
    }
}

impl PoolLimits {
    /// The seeds' `gateway.config` keys: at most `dbPoolSize + dbMaxOverflow` connections
    /// (opened on demand), and `dbPoolTimeout` seconds to wait for one.
    pub fn from_tuning(tuning: &GatewayTuning) -> PoolLimits {
        let connections = u64::from(tuning.db_pool_size) + u64::from(tuning.db_max_overflow);
        PoolLimits {
            connections_max: usize::try_from(connections).unwrap_or(usize::MAX),
            wait_timeout: Duration::from_secs(tuning.db_pool_timeout),
        }
    }
}

fn config_error(message: impl Into<String>) -> StoreError {
    StoreError::Unavailable(format!("postgresql: {}", message.into()))
}

/// The ssl settings a URL carries (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`), removed
/// from it: tokio-postgres knows only disable/prefer/require, and TLS is ours to set up.
fn split_ssl_params(url: &str) -> (String, PgSsl) {
    let mut ssl = PgSsl::default();
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), ssl);
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                ssl.mode = match value {
                    "disable" | "allow" => Some(PgSslMode::Disable),
                    "prefer" | "require" => Some(PgSslMode::Require),
                    "verify-ca" => Some(PgSslMode::VerifyCa),
                    "verify-full" => Some(PgSslMode::VerifyFull),
                    _ => None,
                }
            }
            "sslrootcert" => ssl.root_cert = Some(value.into()),
            "sslcert" => ssl.cert = Some(value.into()),
            "sslkey" => ssl.key = Some(value.into()),
            _ => kept.push(pair),
        }
    }
    let rebuilt = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rebuilt, ssl)
}

/// `postgresql.ssl` wins over what the URL says, field by field.
fn merge_ssl(config: &PgSsl, from_url: PgSsl) -> PgSsl {
    PgSsl {
        enabled: config.enabled,
        mode: config.mode.or(from_url.mode),
        cert: config.cert.clone().or(from_url.cert),
        key: config.key.clone().or(from_url.key),
        root_cert: config.root_cert.clone().or(from_url.root_cert),
    }
}

/// Builds the connection spec. `database` overrides the configured database name (`db init`
/// connects to the `postgres` maintenance database to create the configured one).
pub fn spec(config: &PostgresConfig, database: Option<&str>) -> Result<ConnectSpec, StoreError> {
    let (mut pg, ssl) = match &config.url {
        Some(url) => {
            let (url, url_ssl) = split_ssl_params(url.expose());
            // tokio-postgres's own message may quote the URL: name the problem, not the text.
            let pg = tokio_postgres::Config::from_str(&url)
                .map_err(|_| config_error("url is not a valid postgres:// connection URL"))?;
            (pg, merge_ssl(&config.ssl, url_ssl))
        }
        None => {
            let host = config
                .host
                .as_deref()
                .ok_or_else(|| config_error("neither url nor host is set"))?;
            let mut pg = tokio_postgres::Config::new();
            pg.host(host)
                .port(config.port)
                .dbname(&config.database)
                .user(&config.username);
            (pg, config.ssl.clone())
        }
    };
    if let Some(password) = &config.password {
        pg.password(password.expose());
    }
    if let Some(database) = database {
        pg.dbname(database);
    }
    pg.application_name("caracal")
        .connect_timeout(CONNECT_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE);
    let mode = ssl.effective_mode();
    pg.ssl_mode(if mode == PgSslMode::Disable {
        SslMode::Disable
    } else {
        SslMode::Require
    });
    let tls = MakeRustlsConnect::new(client_tls(&ssl, mode)?);
    Ok(ConnectSpec {
        target: target_of(&pg),
        pg,
        tls,
    })
}

fn target_of(pg: &tokio_postgres::Config) -> String {
    let host = pg
        .get_hosts()
        .first()
        .map_or_else(String::new, |h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        });
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", pg.get_dbname().unwrap_or(""))
}

/// Opens the pool. Connections are made on demand, so this does not touch the network.
pub fn pool(spec: &ConnectSpec, limits: PoolLimits) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        spec.pg.clone(),
        spec.tls.clone(),
        ManagerConfig {
            // No statement is ever prepared by name (PgBouncer transaction mode), so recycling
            // needs no cleanup query: a closed connection is dropped, anything else reused.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(limits.connections_max.max(1))
        .wait_timeout(Some(limits.wait_timeout))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| config_error(format!("cannot build the connection pool: {e}")))
}

/// Opens one connection outside any pool (migrations, `db init`), driving it on a task.
pub async fn connect_one(spec: &ConnectSpec) -> Result<tokio_postgres::Client, StoreError> {
    let (client, connection) = spec
        .pg
        .connect(spec.tls.clone())
        .await
        .map_err(|e| super::connect_error(&spec.target, &e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

fn read_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, StoreError> {
    let certs: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| config_error(format!("ssl.{what} {}: {e}", path.display())))?
        .collect();
    let certs = certs.map_err(|e| config_error(format!("ssl.{what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(config_error(format!(
            "ssl.{what} {}: no certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

/// The rustls client config for a mode: `require` encrypts without checking the server (as
/// libpq does, unless a root certificate is given: then it checks the chain, as libpq does when
/// `root.crt` exists); `verify-ca` checks the chain; `verify-full` the chain and the host name.
fn client_tls(ssl: &PgSsl, mode: PgSslMode) -> Result<rustls::ClientConfig, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(format!("tls: {e}")))?;
    let roots = match &ssl.root_cert {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("rootCert", path)? {
                roots
                    .add(cert)
                    .map_err(|e| config_error(format!("ssl.rootCert: {e}")))?;
            }
            Some(Arc::new(roots))
        }
        None => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, roots) {
        (PgSslMode::Disable, _) | (PgSslMode::Require, None) => {
            Arc::new(AcceptAnyServer(Arc::clone(&provider)))
        }
        (PgSslMode::VerifyCa | PgSslMode::VerifyFull, None) => return Err(config_error(
            "ssl.mode verify-ca and verify-full need ssl.rootCert (the CA that signed the server)",
        )),
        (mode, Some(roots)) => {
            let inner = WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
                .build()
                .map_err(|e| config_error(format!("ssl.rootCert: {e}")))?;
            if mode == PgSslMode::VerifyFull {
                inner
            } else {
                Arc::new(ChainOnly(inner))
            }
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&ssl.cert, &ssl.key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("cert", cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| config_error(format!("ssl.key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| config_error(format!("ssl.cert and ssl.key do not match: {e}")))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(config_error("ssl.cert and ssl.key go together")),
    }
}

/// `sslmode=require`: encryption without authentication of the server (libpq's meaning).
/// Handshake signatures are still checked, so the session is bound to the presented key.
#[derive(Debug)]
struct AcceptAnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to `rootCert`; the name is not compared.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn the_pool_holds_pool_size_plus_max_overflow_connections() {
        let mut tuning = GatewayTuning::default();
        assert_eq!(PoolLimits::from_tuning(&tuning).connections_max, 30);
        tuning.db_pool_size = 5;
        tuning.db_max_overflow = 0;
        tuning.db_pool_timeout = 7;
        let limits = PoolLimits::from_tuning(&tuning);
        assert_eq!(limits.connections_max, 5);
        assert_eq!(limits.wait_timeout, Duration::from_secs(7));
    }
    use crate::config::Secret;

    #[test]
    fn url_ssl_parameters_are_taken_out_of_the_url() {
        let (url, ssl) = split_ssl_params(
            "postgres://u@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=/ca.pem",
        );
        assert_eq!(url, "postgres://u@h:5/db?application_name=x");
        assert_eq!(ssl.mode, Some(PgSslMode::VerifyFull));
        assert_eq!(ssl.root_cert.as_deref(), Some(Path::new("/ca.pem")));
        let (url, ssl) = split_ssl_params("postgres://u@h/db");
        assert_eq!(url, "postgres://u@h/db");
        assert_eq!(ssl, PgSsl::default());
    }

    #[test]
    fn a_password_with_url_reserved_characters_is_passed_as_is() {
        let password = "a/b+c=d@e:f?g#h%i";
        let config = PostgresConfig {
            host: Some("db.example".into()),
            password: Some(Secret::new(password)),
            ..PostgresConfig::default()
        };
        let spec = spec(&config, None).unwrap();
        assert_eq!(spec.pg.get_password(), Some(password.as_bytes()));
        assert_eq!(spec.pg.get_user(), Some("caracal"));
        assert_eq!(spec.target, "db.example:5432/caracal");
        assert!(!format!("{:?}", spec.pg).contains(password));
    }

    #[test]
    fn verify_modes_need_a_root_certificate() {
        let config = PostgresConfig {
            host: Some("db".into()),
            ssl: PgSsl {
                mode: Some(PgSslMode::VerifyFull),
                ..PgSsl::default()
            },
            ..PostgresConfig::default()
        };
        let Err(e) = spec(&config, None) else {
            panic!("verify-full without rootCert accepted");
        };
        assert!(e.to_string().contains("rootCert"), "{e}");
    }
}
