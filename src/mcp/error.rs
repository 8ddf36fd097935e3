//! Every way the MCP adapter answers a request itself, and the one place that turns it into an
//! HTTP status with a JSON-RPC error body (which the official SDK raises as `MCPError` with the
//! code, the message and `data.code`). Builds no other response.

use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use crate::admission::Refusal;
use crate::core::decision::DenyReason;
use crate::http::Body;

/// JSON-RPC codes: the spec's, and ours from the implementation-defined -32000..-32019 range.
pub mod codes {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// MCP 2026-07-28: a routing header disagrees with the body (or is missing).
    pub const HEADER_MISMATCH: i64 = -32020;
    pub const UNAUTHENTICATED: i64 = -32001;
    pub const DENIED: i64 = -32003;
    pub const UNAVAILABLE: i64 = -32004;
    pub const OVERLOADED: i64 = -32005;
    pub const SESSION_NOT_FOUND: i64 = -32006;
    pub const UPSTREAM_UNREACHABLE: i64 = -32010;
    pub const UPSTREAM_TIMEOUT: i64 = -32011;
    pub const FORBIDDEN_ORIGIN: i64 = -32012;
}

#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("not valid JSON: {0}")]
    Parse(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    HeaderMismatch(String),
    #[error("no MCP server named {0:?}")]
    NoServer(String),
    #[error("method {0} is not allowed on this endpoint")]
    MethodNotAllowed(String),
    #[error("origin {0:?} is not allowed")]
    ForbiddenOrigin(String),
    #[error("unknown or foreign Mcp-Session-Id")]
    SessionNotFound,
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("too many requests in flight")]
    Overloaded,
    #[error("upstream MCP server unreachable: {0}")]
    UpstreamUnreachable(String),
    #[error("upstream MCP server did not answer in time")]
    UpstreamTimeout,
}

impl McpError {
    /// The machine-readable code clients and metrics see (`data.code`).
    pub fn code(&self) -> &'static str {
        match self {
            McpError::Parse(_) => "parse_error",
            McpError::InvalidRequest(_) => "invalid_request",
            McpError::PayloadTooLarge(_) => "payload_too_large",
            McpError::HeaderMismatch(_) => "header_mismatch",
            McpError::NoServer(_) => "not_found",
            McpError::MethodNotAllowed(_) => "method_not_allowed",
            McpError::ForbiddenOrigin(_) => "forbidden_origin",
            McpError::SessionNotFound => "session_not_found",
            McpError::Refused(Refusal::Unauthenticated(_)) => "unauthenticated",
            McpError::Refused(Refusal::Denied { reason, .. }) => reason.as_str(),
            McpError::Refused(Refusal::Unavailable { .. }) => "dependency_unavailable",
            McpError::Overloaded => "overloaded",
            McpError::UpstreamUnreachable(_) => "upstream_unreachable",
            McpError::UpstreamTimeout => "upstream_timeout",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            McpError::Parse(_) | McpError::InvalidRequest(_) | McpError::HeaderMismatch(_) => {
                StatusCode::BAD_REQUEST
            }
            McpError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            McpError::NoServer(_) | McpError::SessionNotFound => StatusCode::NOT_FOUND,
            McpError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            McpError::ForbiddenOrigin(_) => StatusCode::FORBIDDEN,
            McpError::Refused(Refusal::Unauthenticated(_)) => StatusCode::UNAUTHORIZED,
            McpError::Refused(Refusal::Denied { .. }) => StatusCode::FORBIDDEN,
            McpError::Refused(Refusal::Unavailable { .. }) | McpError::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            McpError::UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            McpError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn rpc_code(&self) -> i64 {
        use codes::*;
        match self {
            McpError::Parse(_) => PARSE_ERROR,
            McpError::InvalidRequest(_) | McpError::PayloadTooLarge(_) => INVALID_REQUEST,
            McpError::MethodNotAllowed(_) => INVALID_REQUEST,
            McpError::HeaderMismatch(_) => HEADER_MISMATCH,
            McpError::NoServer(_) => METHOD_NOT_FOUND,
            McpError::ForbiddenOrigin(_) => FORBIDDEN_ORIGIN,
            McpError::SessionNotFound => SESSION_NOT_FOUND,
            McpError::Refused(Refusal::Unauthenticated(_)) => UNAUTHENTICATED,
            McpError::Refused(Refusal::Denied { .. }) => DENIED,
            McpError::Refused(Refusal::Unavailable { .. }) => UNAVAILABLE,
            McpError::Overloaded => OVERLOADED,
            McpError::UpstreamUnreachable(_) => UPSTREAM_UNREACHABLE,
            McpError::UpstreamTimeout => UPSTREAM_TIMEOUT,
        }
    }

    /// What the client is told: no internals (a dependency's error stays in the log).
    fn client_message(&self) -> String {
        match self {
            McpError::Refused(Refusal::Denied { reason, .. }) => deny_message(*reason).to_owned(),
            McpError::Refused(Refusal::Unavailable { what, .. }) => {
                format!("{what} unavailable; nothing was forwarded")
            }
            other => other.to_string(),
        }
    }

    /// The JSON-RPC error `data`: our code, and for a denial the policy and what is left.
    fn data(&self) -> Value {
        let mut data = json!({ "code": self.code() });
        if let McpError::Refused(Refusal::Denied {
            policy_id,
            remaining,
            ..
        }) = self
        {
            if let Some(id) = policy_id {
                data["policy_id"] = json!(id.to_string());
            }
            if let Some(left) = remaining {
                data["remaining_micros"] = json!(left.get());
            }
        }
        data
    }

    /// The response: the status, and a JSON-RPC error naming the request's id (or null).
    pub fn into_response(self, id: Option<&Value>) -> Response<Body> {
        let body = json!({
            "jsonrpc": "2.0",
            "id": id.cloned().unwrap_or(Value::Null),
            "error": { "code": self.rpc_code(), "message": self.client_message(), "data": self.data() },
        });
        let mut response = crate::http::json(self.status(), &body);
        if matches!(self, McpError::Overloaded) {
            response.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

fn deny_message(reason: DenyReason) -> &'static str {
    match reason {
        DenyReason::BudgetExceeded => "budget exceeded: this call would cross a spending policy",
        DenyReason::ResourceNotAllowed => "this tool is not in the agent's allow list",
        DenyReason::AgentSuspended => "the agent or an ancestor is suspended",
        DenyReason::UnknownPrice => "this tool has no price in the pricebook",
        DenyReason::CurrencyMismatch => "the policy and the price use different currencies",
        DenyReason::Unauthenticated => "the credential was not accepted",
    }
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_status_a_code_and_a_json_rpc_body() {
        let cases = [
            (
                McpError::HeaderMismatch("x".into()),
                400,
                -32020,
                "header_mismatch",
            ),
            (
                McpError::Refused(Refusal::Unauthenticated("no")),
                401,
                -32001,
                "unauthenticated",
            ),
            (
                McpError::Refused(Refusal::Denied {
                    reason: DenyReason::BudgetExceeded,
                    policy_id: None,
                    remaining: None,
                }),
                403,
                -32003,
                "budget_exceeded",
            ),
            (
                McpError::PayloadTooLarge(1),
                413,
                -32600,
                "payload_too_large",
            ),
            (McpError::Overloaded, 503, -32005, "overloaded"),
            (McpError::SessionNotFound, 404, -32006, "session_not_found"),
        ];
        for (error, status, code, name) in cases {
            assert_eq!(error.status().as_u16(), status);
            assert_eq!(error.rpc_code(), code);
            assert_eq!(error.code(), name);
        }
    }
}
