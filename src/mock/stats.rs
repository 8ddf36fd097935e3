//! What the mock has been asked, for tests to assert on: request counts by path and the
//! headers and body of the last provider call (e.g. which credential the gateway sent).
//! Bounded: the path table stops growing at `PATHS_MAX`, and only the last call is kept.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use hyper::http::request::Parts;
use hyper::HeaderMap;
use serde_json::{json, Value};

/// Distinct paths counted by name; later new paths are counted under `OTHER_PATHS`.
pub const PATHS_MAX: usize = 256;
/// The `by_path` key of paths past `PATHS_MAX`.
pub const OTHER_PATHS: &str = "(other)";

#[derive(Debug, Default)]
struct Inner {
    requests: u64,
    by_path: BTreeMap<String, u64>,
    last: Option<Last>,
}

#[derive(Debug)]
struct Last {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// Counts of provider calls (every request but `/_mock/*`), shared by all connections.
#[derive(Debug, Default)]
pub struct Stats(Mutex<Inner>);

impl Stats {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one call and keeps it as the last one. Cheap: header map and body are
    /// reference-counted copies, rendered only by `snapshot`.
    pub fn record(&self, parts: &Parts, body: &Bytes) {
        let path = parts.uri.path();
        let mut inner = self.lock();
        inner.requests += 1;
        let key = if inner.by_path.contains_key(path) || inner.by_path.len() < PATHS_MAX {
            path
        } else {
            OTHER_PATHS
        };
        *inner.by_path.entry(key.to_owned()).or_default() += 1;
        inner.last = Some(Last {
            method: parts.method.to_string(),
            path: path.to_owned(),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
    }

    /// `{"requests", "by_path", "last_method", "last_path", "last_headers", "last_body"}`;
    /// header names are lower case, repeated headers are joined with `, `, and the body is
    /// its JSON when it parses, else its text (`null` before the first call).
    pub fn snapshot(&self) -> Value {
        let inner = self.lock();
        let mut headers = serde_json::Map::new();
        let (mut method, mut path, mut body) = (Value::Null, Value::Null, Value::Null);
        if let Some(last) = &inner.last {
            for name in last.headers.keys() {
                let values: Vec<String> = last
                    .headers
                    .get_all(name)
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect();
                headers.insert(name.as_str().to_owned(), Value::String(values.join(", ")));
            }
            method = json!(last.method);
            path = json!(last.path);
            body = serde_json::from_slice(&last.body)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&last.body)));
        }
        json!({
            "requests": inner.requests,
            "by_path": inner.by_path,
            "last_method": method,
            "last_path": path,
            "last_headers": headers,
            "last_body": body,
        })
    }

    pub fn reset(&self) {
        *self.lock() = Inner::default();
    }
}
