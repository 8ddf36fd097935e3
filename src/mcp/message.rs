//! Reading one inbound JSON-RPC message (what it is, its method, the tool or resource it names)
//! and checking that the MCP routing headers agree with it. The body is the truth: headers are
//! checked copies, so a spoofed `Mcp-Name` can only get a request refused, never re-priced.

use base64::Engine as _;
use hyper::HeaderMap;
use serde_json::Value;

use super::error::McpError;

pub const PROTOCOL_VERSION_HEADER: &str = "mcp-protocol-version";
pub const METHOD_HEADER: &str = "mcp-method";
pub const NAME_HEADER: &str = "mcp-name";
/// The stateless protocol revisions: every request carries its own envelope and headers.
pub const MODERN_VERSIONS: &[&str] = &["2026-07-28"];
/// Where a 2026-07-28 request names its protocol version.
const PROTOCOL_VERSION_META_KEY: &str = "io.modelcontextprotocol/protocolVersion";

/// What kind of JSON-RPC message a POST carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    /// The client answering a request the server sent it (sampling, elicitation).
    Response,
}

/// One inbound message, as far as the adapter needs to know it.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub kind: Kind,
    pub id: Option<Value>,
    pub method: Option<String>,
    /// `params.name` of `tools/call` and `prompts/get`, `params.uri` of `resources/read`.
    pub name: Option<String>,
    /// `params._meta["io.modelcontextprotocol/protocolVersion"]`, when present.
    pub meta_version: Option<Value>,
}

impl Inbound {
    pub fn is(&self, method: &str) -> bool {
        self.method.as_deref() == Some(method)
    }
}

/// The params key mirrored in `Mcp-Name` for the methods that name something.
fn name_key(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Parses a POST body: exactly one JSON-RPC 2.0 message (batches were removed in 2025-06-18).
pub fn parse(body: &[u8]) -> Result<Inbound, McpError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| McpError::Parse(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(McpError::InvalidRequest(
            "the body must be one JSON-RPC message (batches are not supported)".into(),
        ));
    };
    if map.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(McpError::InvalidRequest("jsonrpc must be \"2.0\"".into()));
    }
    let id = map.get("id").filter(|v| !v.is_null()).cloned();
    let method = match map.get("method") {
        Some(Value::String(m)) => Some(m.clone()),
        Some(_) => return Err(McpError::InvalidRequest("method must be a string".into())),
        None => None,
    };
    let kind = match (&method, &id) {
        (Some(_), Some(_)) => Kind::Request,
        (Some(_), None) => Kind::Notification,
        (None, Some(_)) if map.contains_key("result") || map.contains_key("error") => {
            Kind::Response
        }
        _ => return Err(McpError::InvalidRequest("not a JSON-RPC message".into())),
    };
    let params = map.get("params");
    let name = method
        .as_deref()
        .and_then(name_key)
        .and_then(|key| params?.get(key)?.as_str())
        .map(str::to_owned);
    if kind == Kind::Request && method.as_deref().and_then(name_key).is_some() && name.is_none() {
        return Err(McpError::InvalidRequest(
            "params must name the tool, prompt or resource".into(),
        ));
    }
    let meta_version = params
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(PROTOCOL_VERSION_META_KEY))
        .cloned();
    Ok(Inbound {
        kind,
        id,
        method,
        name,
        meta_version,
    })
}

/// The single value of a routing header; a repeated one is a mismatch (first-copy and
/// last-copy readers would disagree).
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, McpError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(McpError::HeaderMismatch(format!(
            "{name} header appears more than once"
        )));
    }
    first
        .map(|v| {
            v.to_str()
                .map_err(|_| McpError::HeaderMismatch(format!("{name} header is not ASCII")))
        })
        .transpose()
}

/// Whether the request is on a stateless (2026-07-28) protocol revision.
pub fn is_modern(headers: &HeaderMap) -> bool {
    headers
        .get(PROTOCOL_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| MODERN_VERSIONS.contains(&v))
}

/// The 2026-07-28 rules (`MCP-Protocol-Version` equals the envelope's version, `Mcp-Method` the
/// body's method, `Mcp-Name` the named param), applied to every request of that revision; on
/// older revisions, a routing header that is present must still agree with the body.
pub fn check_headers(headers: &HeaderMap, message: &Inbound) -> Result<(), McpError> {
    let version = single(headers, PROTOCOL_VERSION_HEADER)?;
    let method_header = single(headers, METHOD_HEADER)?;
    let name_header = single(headers, NAME_HEADER)?;
    let modern = version.is_some_and(|v| MODERN_VERSIONS.contains(&v));
    let mismatch = |what: &str| Err(McpError::HeaderMismatch(what.to_owned()));
    if modern && message.kind == Kind::Request {
        if message.meta_version.as_ref().and_then(Value::as_str) != version {
            return mismatch("MCP-Protocol-Version header does not match the request envelope's protocol version");
        }
        if method_header != message.method.as_deref() {
            return mismatch("Mcp-Method header does not match the request body's method");
        }
    } else if method_header.is_some() && method_header != message.method.as_deref() {
        return mismatch("Mcp-Method header does not match the request body's method");
    }
    let Some(body_name) = message.name.as_deref() else {
        return Ok(());
    };
    let must_match = modern && message.kind == Kind::Request || name_header.is_some();
    if must_match && name_header.and_then(decode_header_value).as_deref() != Some(body_name) {
        return mismatch("Mcp-Name header does not match the request body's name");
    }
    Ok(())
}

/// The inverse of the SDK's `encode_header_value`: the value verbatim, or the UTF-8 inside a
/// canonical `=?base64?…?=` sentinel; `None` for a malformed sentinel (it never matches).
pub fn decode_header_value(value: &str) -> Option<String> {
    let Some(payload) = value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    else {
        return Some(value.to_owned());
    };
    let engine = base64::engine::general_purpose::STANDARD;
    let bytes = engine.decode(payload).ok()?;
    if engine.encode(&bytes) != payload {
        return None;
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn call(name: &str) -> Inbound {
        parse(
            format!(
                r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"{name}","arguments":{{}},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}}}}"#
            )
            .as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                *k,
                HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        map
    }

    #[test]
    fn a_modern_call_must_carry_matching_headers() {
        let ok = headers(&[
            (PROTOCOL_VERSION_HEADER, "2026-07-28"),
            (METHOD_HEADER, "tools/call"),
            (NAME_HEADER, "search"),
        ]);
        assert!(check_headers(&ok, &call("search")).is_ok());
        let spoofed = headers(&[
            (PROTOCOL_VERSION_HEADER, "2026-07-28"),
            (METHOD_HEADER, "tools/call"),
            (NAME_HEADER, "cheap"),
        ]);
        assert!(matches!(
            check_headers(&spoofed, &call("search")),
            Err(McpError::HeaderMismatch(_))
        ));
        let missing = headers(&[
            (PROTOCOL_VERSION_HEADER, "2026-07-28"),
            (METHOD_HEADER, "tools/call"),
        ]);
        assert!(check_headers(&missing, &call("search")).is_err());
        let doubled = headers(&[
            (PROTOCOL_VERSION_HEADER, "2026-07-28"),
            (METHOD_HEADER, "tools/call"),
            (NAME_HEADER, "search"),
            (NAME_HEADER, "search"),
        ]);
        assert!(check_headers(&doubled, &call("search")).is_err());
    }

    #[test]
    fn an_older_revision_is_checked_only_on_the_headers_it_sends() {
        let legacy = headers(&[(PROTOCOL_VERSION_HEADER, "2025-11-25")]);
        assert!(check_headers(&legacy, &call("search")).is_ok());
        let spoofed = headers(&[
            (PROTOCOL_VERSION_HEADER, "2025-11-25"),
            (NAME_HEADER, "cheap"),
        ]);
        assert!(check_headers(&spoofed, &call("search")).is_err());
    }

    #[test]
    fn base64_sentinels_decode_and_malformed_ones_never_match() {
        assert_eq!(decode_header_value("plain").as_deref(), Some("plain"));
        assert_eq!(
            decode_header_value("=?base64?w6lsw6g=?=").as_deref(),
            Some("élè")
        );
        assert_eq!(decode_header_value("=?base64?!!?="), None);
    }

    #[test]
    fn batches_and_nameless_calls_are_invalid() {
        assert!(parse(b"[]").is_err());
        assert!(parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#).is_err());
        let note = parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert_eq!(note.map(|m| m.kind).ok(), Some(Kind::Notification));
    }
}
