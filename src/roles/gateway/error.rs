//! Every way the gateway refuses or fails a request, and the one function that turns it into a
//! status and an OpenAI-style JSON body. Nothing else in the gateway builds an error response.

use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};

use crate::admission::Refusal;
use crate::core::decision::DenyReason;
use crate::core::money::Micros;
use crate::core::policy::PolicyId;
use crate::http::{self, Body};

/// Seconds a client is told to wait after `overloaded` or `dependency_unavailable`.
const RETRY_AFTER_SECONDS: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("request denied: {reason}")]
    Denied {
        reason: DenyReason,
        policy_id: Option<PolicyId>,
        remaining: Option<Micros>,
    },
    #[error("no route for {0}")]
    NoRoute(String),
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("too many requests in flight")]
    Overloaded,
    /// A dependency (store, spend cache, event bus) could not be reached in time: fail closed.
    #[error("{what} unavailable")]
    DependencyUnavailable { what: &'static str, detail: String },
    #[error("upstream unreachable")]
    UpstreamUnreachable(String),
    #[error("upstream timed out")]
    UpstreamTimeout,
}

impl From<Refusal> for GatewayError {
    fn from(refusal: Refusal) -> GatewayError {
        match refusal {
            Refusal::Unauthenticated(why) => GatewayError::Unauthenticated(why),
            Refusal::Denied {
                reason,
                policy_id,
                remaining,
            } => GatewayError::Denied {
                reason,
                policy_id,
                remaining,
            },
            Refusal::Unavailable { what, detail } => {
                GatewayError::DependencyUnavailable { what, detail }
            }
        }
    }
}

impl GatewayError {
    /// The machine-readable code, also the `code` label of `caracal_gateway_errors_total`.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::Unauthenticated(_) => "unauthenticated",
            GatewayError::Denied { reason, .. } => reason.as_str(),
            GatewayError::NoRoute(_) => "not_found",
            GatewayError::PayloadTooLarge(_) => "payload_too_large",
            GatewayError::InvalidRequest(_) => "invalid_request",
            GatewayError::Overloaded => "overloaded",
            GatewayError::DependencyUnavailable { .. } => "dependency_unavailable",
            GatewayError::UpstreamUnreachable(_) => "upstream_unreachable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Denied { .. } => StatusCode::FORBIDDEN,
            GatewayError::NoRoute(_) => StatusCode::NOT_FOUND,
            GatewayError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::Overloaded | GatewayError::DependencyUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            GatewayError::UpstreamUnreachable(_) => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// What the client reads: no internals, no secrets.
    fn client_message(&self) -> String {
        match self {
            GatewayError::Denied {
                reason, remaining, ..
            } => match reason {
                DenyReason::BudgetExceeded => format!(
                    "budget exceeded: this request could cost more than the {} left",
                    remaining.unwrap_or_default()
                ),
                DenyReason::ResourceNotAllowed => {
                    "this model or tool is not allowed by policy".into()
                }
                DenyReason::AgentSuspended => {
                    "the agent or one of its ancestors is suspended".into()
                }
                DenyReason::UnknownPrice => "no price is known for this model or tool".into(),
                DenyReason::CurrencyMismatch => {
                    "the policy and the price use different currencies".into()
                }
                DenyReason::Unauthenticated => "unauthenticated".into(),
            },
            GatewayError::DependencyUnavailable { what, .. } => {
                format!("{what} is unavailable; nothing was forwarded")
            }
            other => other.to_string(),
        }
    }

    /// The response for this error. Logged by the caller, once.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let code = self.code();
        let kind = match status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            413 | 400 | 404 => "invalid_request_error",
            _ => "server_error",
        };
        let mut error = serde_json::json!({
            "type": kind,
            "code": code,
            "message": self.client_message(),
        });
        if let GatewayError::Denied {
            policy_id,
            remaining,
            ..
        } = &self
        {
            error["policy_id"] = serde_json::json!(policy_id.map(|p| p.to_string()));
            error["remaining"] = serde_json::json!(remaining.map(|r| r.to_string()));
        }
        let mut response = http::json(status, &serde_json::json!({ "error": error }));
        if matches!(
            self,
            GatewayError::Overloaded | GatewayError::DependencyUnavailable { .. }
        ) {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_denial_is_403_with_its_reason_as_code() {
        for reason in DenyReason::ALL {
            let e = GatewayError::Denied {
                reason,
                policy_id: None,
                remaining: Some(Micros(5)),
            };
            assert_eq!(e.status(), StatusCode::FORBIDDEN);
            assert_eq!(e.code(), reason.as_str());
        }
        let overloaded = GatewayError::Overloaded.into_response();
        assert_eq!(overloaded.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(overloaded.headers().contains_key(RETRY_AFTER));
    }
}
