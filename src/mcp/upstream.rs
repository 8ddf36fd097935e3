//! The upstream MCP servers: the table of `mcpAdapter.servers`, the pooled client, and what a
//! forwarded request and its response carry. Headers pass by allow list, so the agent's
//! credential (and anything else of the client's) never reaches a server; each server gets its
//! own credential instead. No budgets, no JSON-RPC.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::McpServer;

/// Idle keep-alive connections kept per upstream host.
const POOL_IDLE_PER_HOST_MAX: usize = 256;
/// How long an idle upstream connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Upstream TCP connect deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The session header, in both directions (rewritten, never copied).
pub const SESSION_HEADER: &str = "mcp-session-id";
/// Client headers a server may see (besides `Mcp-Param-*`).
const FORWARDED_REQUEST_HEADERS: &[&str] = &[
    "accept",
    "content-type",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
];
/// Server headers a client may see (besides the rewritten session id).
const FORWARDED_RESPONSE_HEADERS: &[HeaderName] = &[CONTENT_TYPE, CACHE_CONTROL];

pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The pooled HTTP/1.1 + h2 client (TLS by rustls with the Mozilla roots).
pub fn client() -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(POOL_IDLE_PER_HOST_MAX)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(https)
}

/// One configured server, ready to use.
pub struct Server {
    pub name: String,
    uri: Uri,
    credential: Option<(HeaderName, HeaderValue)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("mcpAdapter.servers {name}: url: {error}")]
    Url { name: String, error: String },
    #[error("mcpAdapter.servers {name}: the credential is not a valid header value")]
    Credential { name: String },
}

impl Server {
    pub fn from_config(config: &McpServer) -> Result<Server, ServerError> {
        let uri = config
            .url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| ServerError::Url {
                name: config.name.clone(),
                error: e.to_string(),
            })?;
        let credential = match config.credential() {
            None => None,
            Some(secret) => {
                let (name, value) = match &config.credential_header {
                    Some(header) => (
                        HeaderName::from_bytes(header.as_bytes()).ok(),
                        secret.expose().to_owned(),
                    ),
                    None => (Some(AUTHORIZATION), format!("Bearer {}", secret.expose())),
                };
                let bad = || ServerError::Credential {
                    name: config.name.clone(),
                };
                let mut value = HeaderValue::from_str(&value).map_err(|_| bad())?;
                value.set_sensitive(true);
                Some((name.ok_or_else(bad)?, value))
            }
        };
        Ok(Server {
            name: config.name.clone(),
            uri,
            credential,
        })
    }

    /// The request to the server: the client's allowed headers, the upstream session, the
    /// correlation id and the server's own credential.
    pub fn request(
        &self,
        method: Method,
        client_headers: &HeaderMap,
        upstream_session: Option<&str>,
        correlation_id: &str,
        body: Bytes,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        for (name, value) in client_headers {
            let allowed = FORWARDED_REQUEST_HEADERS.contains(&name.as_str())
                || name.as_str().starts_with("mcp-param-");
            if allowed {
                headers.append(name.clone(), value.clone());
            }
        }
        if !headers.contains_key(ACCEPT) {
            headers.insert(
                ACCEPT,
                HeaderValue::from_static("application/json, text/event-stream"),
            );
        }
        let mut put = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        };
        if let Some(session) = upstream_session {
            put(SESSION_HEADER, session);
        }
        put("x-correlation-id", correlation_id);
        if let Some((name, value)) = &self.credential {
            headers.insert(name.clone(), value.clone());
        }
        request
    }
}

/// The server's response headers a client may see; the upstream session id is handed to
/// `seal` and replaced by what it returns.
pub fn response_headers(upstream: &HeaderMap, seal: impl FnOnce(&str) -> String) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for name in FORWARDED_RESPONSE_HEADERS {
        if let Some(value) = upstream.get(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
    let session = upstream.get(SESSION_HEADER).and_then(|v| v.to_str().ok());
    if let Some(sealed) = session.map(seal) {
        if let Ok(value) = HeaderValue::from_str(&sealed) {
            headers.insert(SESSION_HEADER, value);
        }
    }
    headers
}

/// Servers by name.
pub fn table(servers: &[McpServer]) -> Result<HashMap<String, Server>, ServerError> {
    servers
        .iter()
        .map(|s| Server::from_config(s).map(|server| (s.name.clone(), server)))
        .collect()
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_credential_never_goes_upstream_and_the_servers_does() {
        let mut config = McpServer::template();
        config.credential = Some(crate::config::Secret::new("srv-secret"));
        let server = Server::from_config(&config).unwrap_or_else(|e| panic!("{e}"));
        let mut client = HeaderMap::new();
        client.insert(AUTHORIZATION, HeaderValue::from_static("Bearer cak_agent"));
        client.insert("x-api-key", HeaderValue::from_static("cak_agent"));
        client.insert("cookie", HeaderValue::from_static("a=b"));
        client.insert("mcp-name", HeaderValue::from_static("search"));
        client.insert("mcp-param-q", HeaderValue::from_static("x"));
        let request = server.request(Method::POST, &client, Some("up-1"), "c-1", Bytes::new());
        let headers = request.headers();
        assert_eq!(headers[AUTHORIZATION], "Bearer srv-secret");
        assert!(headers.get("x-api-key").is_none());
        assert!(headers.get("cookie").is_none());
        assert_eq!(headers["mcp-name"], "search");
        assert_eq!(headers["mcp-param-q"], "x");
        assert_eq!(headers[SESSION_HEADER], "up-1");
    }
}
