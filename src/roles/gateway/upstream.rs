//! Where a request goes and what it carries there: the route table (path prefix → upstream),
//! header rewriting (hop-by-hop headers stripped, the agent's credential replaced by the
//! provider's), and the pooled keep-alive client. No budgets, no metering.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, HOST};
use hyper::{HeaderMap, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::{Provider, Route as RouteConfig};

/// Idle keep-alive connections kept per upstream host.
const POOL_IDLE_PER_HOST_MAX: usize = 256;
/// How long an idle upstream connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Headers that belong to one hop and are never forwarded (RFC 9110 §7.6.1), plus the
/// credentials of the agent, which are replaced by the provider's.
const STRIPPED_REQUEST_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "x-api-key",
    "content-length",
    "x-caracal-target-url",
    "x-caracal-nonce",
    "x-caracal-timestamp",
];
const STRIPPED_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Builds the pooled HTTP/1.1 + h2 client (TLS by rustls with the Mozilla roots).
pub fn client(connect_timeout: Duration) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
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

/// One configured route, ready to use.
#[derive(Clone)]
pub struct Route {
    pub prefix: String,
    /// The prefix again, shared: the `route` label of the request metrics, without a copy per
    /// request.
    pub label: Arc<str>,
    pub upstream: String,
    pub provider: Provider,
    credential: Option<HeaderValue>,
}

impl Route {
    pub fn from_config(config: &RouteConfig) -> Route {
        let credential = config.credential().and_then(|secret| {
            let value = match config.provider {
                Provider::Anthropic => secret.expose().to_owned(),
                _ => format!("Bearer {}", secret.expose()),
            };
            let mut header = HeaderValue::from_str(&value).ok()?;
            header.set_sensitive(true);
            Some(header)
        });
        let prefix = config.prefix.trim_end_matches('/');
        Route {
            prefix: prefix.to_owned(),
            label: Arc::from(prefix),
            upstream: config.upstream.trim_end_matches('/').to_owned(),
            provider: config.provider,
            credential,
        }
    }

    pub fn provider_name(&self) -> &'static str {
        match self.provider {
            Provider::Openai => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Generic => "generic",
        }
    }

    /// The upstream URI for a request path under this route's prefix.
    pub fn upstream_uri(&self, rest: &str, query: Option<&str>) -> Result<Uri, String> {
        let mut uri = format!("{}{rest}", self.upstream);
        if let Some(q) = query {
            uri.push('?');
            uri.push_str(q);
        }
        uri.parse()
            .map_err(|e| format!("bad upstream uri {uri}: {e}"))
    }

    /// Copies the client's headers minus hop-by-hop ones and the agent's credentials, then
    /// sets the provider's credential.
    pub fn upstream_headers(
        &self,
        incoming: &HeaderMap,
        extra: &[(&'static str, HeaderValue)],
    ) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(incoming.len() + extra.len() + 1);
        for (name, value) in incoming {
            if !STRIPPED_REQUEST_HEADERS.contains(&name.as_str()) {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Some(credential) = &self.credential {
            let name = match self.provider {
                Provider::Anthropic => HeaderName::from_static("x-api-key"),
                _ => AUTHORIZATION,
            };
            headers.insert(name, credential.clone());
        }
        for (name, value) in extra {
            headers.insert(*name, value.clone());
        }
        headers.remove(HOST);
        headers
    }
}

/// Response headers safe to pass back to the client.
pub fn response_headers(upstream: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(upstream.len() + 4);
    for (name, value) in upstream {
        if !STRIPPED_RESPONSE_HEADERS.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers
}

/// The routes, longest prefix first (shared, so a request takes its route without copying it).
pub struct RouteTable(Vec<Arc<Route>>);

impl RouteTable {
    pub fn new(configs: &[RouteConfig]) -> RouteTable {
        let mut routes: Vec<Arc<Route>> = configs
            .iter()
            .map(|c| Arc::new(Route::from_config(c)))
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        RouteTable(routes)
    }

    /// The route for `path` and the rest of the path after its prefix.
    pub fn resolve<'a>(&self, path: &'a str) -> Option<(&Arc<Route>, &'a str)> {
        self.0.iter().find_map(|route| {
            let rest = path.strip_prefix(route.prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((route, rest))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn route(prefix: &str, provider: Provider) -> RouteConfig {
        RouteConfig {
            prefix: prefix.into(),
            upstream: "http://127.0.0.1:1".into(),
            provider,
            credential_file: None,
            credential_env: None,
            ..RouteConfig::template()
        }
    }

    #[test]
    fn the_longest_prefix_wins_and_partial_segments_do_not_match() {
        let table = RouteTable::new(&[
            route("/openai", Provider::Openai),
            route("/openai/beta", Provider::Generic),
        ]);
        let (r, rest) = table.resolve("/openai/beta/v1/x").unwrap();
        assert_eq!(r.prefix, "/openai/beta");
        assert_eq!(rest, "/v1/x");
        assert!(table.resolve("/openaix/v1").is_none());
        assert!(table.resolve("/anthropic/v1/messages").is_none());
    }

    #[test]
    fn the_agents_credentials_never_go_upstream() {
        let table = RouteTable::new(&[route("/openai", Provider::Openai)]);
        let (r, _) = table.resolve("/openai/v1/chat/completions").unwrap();
        let mut incoming = HeaderMap::new();
        incoming.insert(AUTHORIZATION, HeaderValue::from_static("Bearer cak_agent"));
        incoming.insert("x-api-key", HeaderValue::from_static("cak_agent"));
        incoming.insert("connection", HeaderValue::from_static("keep-alive"));
        incoming.insert("content-type", HeaderValue::from_static("application/json"));
        let out = r.upstream_headers(&incoming, &[]);
        assert!(out.get(AUTHORIZATION).is_none());
        assert!(out.get("x-api-key").is_none());
        assert!(out.get("connection").is_none());
        assert_eq!(out.get("content-type").unwrap(), "application/json");
    }
}
