//! `consumers.auditLogger.s3`: how `s3://bucket/prefix/` audit destinations reach their store
//! (region, endpoint, credentials as secrets) and the limits that cut the log into objects.
//! Types, defaults and checks only: the object-store client lives in `audit::object`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::secret::Secret;

/// `consumers.auditLogger.s3`. Every setting left unset falls back to the standard AWS
/// environment (`AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, web identity and instance metadata), as the AWS SDKs do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditS3Config {
    /// The bucket's region (default: `AWS_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// Base URL of an S3-compatible store (`http://minio:9000`); default: AWS's endpoint for
    /// the region. An `http://` endpoint is spoken to in plain HTTP.
    pub endpoint: Option<String>,
    /// Access key id (default: `AWS_ACCESS_KEY_ID`), or `accessKeyIdFile`. Masked in
    /// `config show`.
    pub access_key_id: Option<Secret>,
    /// File holding the access key id (exclusive with `accessKeyId`).
    pub access_key_id_file: Option<PathBuf>,
    /// Secret access key (default: `AWS_SECRET_ACCESS_KEY`), or `secretAccessKeyFile`.
    pub secret_access_key: Option<Secret>,
    /// File holding the secret access key (exclusive with `secretAccessKey`).
    pub secret_access_key_file: Option<PathBuf>,
    /// Session token of temporary credentials (default: `AWS_SESSION_TOKEN`).
    pub session_token: Option<Secret>,
    /// Most records in one object (default 10000).
    pub object_records_max: usize,
    /// Largest object body in bytes (default 16 MiB); a single record larger than this is
    /// written alone in its own object.
    pub object_bytes_max: usize,
    /// Longest a logged record waits before the object holding it is written, in seconds
    /// (default 60): an object is written when it is full or its oldest record is this old.
    pub flush_interval_seconds: u64,
    /// Longest one PUT may take, in seconds, retries included (default 60).
    pub request_timeout_seconds: u64,
}

impl Default for AuditS3Config {
    fn default() -> Self {
        Self {
            region: None,
            endpoint: None,
            access_key_id: None,
            access_key_id_file: None,
            secret_access_key: None,
            secret_access_key_file: None,
            session_token: None,
            object_records_max: 10_000,
            object_bytes_max: 16 * 1024 * 1024,
            flush_interval_seconds: 60,
            request_timeout_seconds: 60,
        }
    }
}

impl AuditS3Config {
    /// The first setting that cannot work, as (key under `consumers.auditLogger.s3`, problem).
    pub(crate) fn problem(&self) -> Option<(&'static str, String)> {
        for (key, value) in [
            ("objectRecordsMax", self.object_records_max as u64),
            ("objectBytesMax", self.object_bytes_max as u64),
            ("flushIntervalSeconds", self.flush_interval_seconds),
            ("requestTimeoutSeconds", self.request_timeout_seconds),
        ] {
            if value == 0 {
                return Some((key, "must be greater than 0".to_owned()));
            }
        }
        if let Some(endpoint) = &self.endpoint {
            let scheme_ok = endpoint.starts_with("http://") || endpoint.starts_with("https://");
            if !scheme_ok || endpoint.contains('@') || endpoint.contains(char::is_whitespace) {
                return Some((
                    "endpoint",
                    "must be an http:// or https:// URL without credentials".to_owned(),
                ));
            }
        }
        if self.region.as_deref().is_some_and(str::is_empty) {
            return Some(("region", "must not be empty".to_owned()));
        }
        None
    }
}

/// Splits the part of an `s3://` URI after the scheme into (bucket, key prefix). The prefix
/// has no leading `/` and, when not empty, ends with one, so keys are `prefix + name`.
pub(crate) fn bucket_and_prefix(rest: &str) -> Option<(String, String)> {
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'));
    if !bucket_ok || prefix.contains(['?', '#']) || prefix.contains("//") {
        return None;
    }
    let prefix = prefix.trim_start_matches('/');
    let prefix = if prefix.is_empty() || prefix.ends_with('/') {
        prefix.to_owned()
    } else {
        format!("{prefix}/")
    };
    Some((bucket.to_owned(), prefix))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_seeds_uri_splits_into_bucket_and_a_slash_ended_prefix() {
        let split = |s| bucket_and_prefix(s).unwrap();
        assert_eq!(
            split("audit-logs-bucket/caracal/"),
            ("audit-logs-bucket".into(), "caracal/".into())
        );
        assert_eq!(split("bkt/a/b"), ("bkt".into(), "a/b/".into()));
        assert_eq!(split("bkt"), ("bkt".into(), String::new()));
        assert_eq!(split("bkt/"), ("bkt".into(), String::new()));
        for bad in ["", "Upper", "ab", "b@d/x", "bkt/a//b", "bkt/x?y"] {
            assert!(bucket_and_prefix(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn zero_limits_and_odd_endpoints_are_named() {
        let mut c = AuditS3Config::default();
        assert!(c.problem().is_none());
        c.flush_interval_seconds = 0;
        assert_eq!(c.problem().unwrap().0, "flushIntervalSeconds");
        c = AuditS3Config {
            endpoint: Some("http://user:pw@minio:9000".into()),
            ..AuditS3Config::default()
        };
        assert_eq!(c.problem().unwrap().0, "endpoint");
        c.endpoint = Some("http://127.0.0.1:9000".into());
        assert!(c.problem().is_none());
    }
}
