//! Ships the audit log to an object store (`s3://bucket/prefix/`) as objects of whole lines,
//! each record in exactly one object. An object's range of ids is written to the store as a
//! plan (a second cursor) before the PUT and the destination's cursor moves after it, so a
//! retry, after a failure, a crash or on another replica, PUTs the same key with the same
//! bytes (ARCHITECTURE.md, "Audit objects"). Never deletes or lists objects.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, ClientConfigKey, ObjectStore, PutOptions, PutPayload, RetryConfig,
};

use super::export::ExportError;
use super::syslog;
use crate::config::{AuditS3Config, ExportFormat};
use crate::store::audit::{AuditRecord, AuditStore};

/// Digits of the zero-padded ids in an object's name, so names sort in id order.
const ID_DIGITS: usize = 20;

/// When an object is cut and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLimits {
    pub records_max: usize,
    pub bytes_max: usize,
    pub flush_interval: Duration,
    pub request_timeout: Duration,
}

impl ObjectLimits {
    pub fn from_config(c: &AuditS3Config) -> ObjectLimits {
        ObjectLimits {
            records_max: c.object_records_max.max(1),
            bytes_max: c.object_bytes_max.max(1),
            flush_interval: Duration::from_secs(c.flush_interval_seconds),
            request_timeout: Duration::from_secs(c.request_timeout_seconds),
        }
    }
}

/// A record read after the cursor and not yet in an object, as the line it will be.
struct Line {
    id: i64,
    logged_at_micros: i64,
    text: String,
}

/// One object-store destination and the records it holds back until an object is due.
pub struct ObjectTarget {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    format: ExportFormat,
    limits: ObjectLimits,
    /// The cursor `pending` follows; pending is dropped when the stored cursor differs.
    pending_after: i64,
    pending: Vec<Line>,
}

impl ObjectTarget {
    /// A client for `bucket` from the standard AWS environment, overridden by `config`. Makes
    /// no request: a wrong credential shows at the first PUT, as a failed export.
    pub fn s3(
        bucket: &str,
        prefix: &str,
        config: &AuditS3Config,
        format: ExportFormat,
    ) -> Result<ObjectTarget, ExportError> {
        let limits = ObjectLimits::from_config(config);
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &config.endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let Some(id) = &config.access_key_id {
            builder = builder.with_access_key_id(id.expose());
        }
        if let Some(key) = &config.secret_access_key {
            builder = builder.with_secret_access_key(key.expose());
        }
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token.expose());
        }
        let retry = RetryConfig {
            max_retries: 3,
            retry_timeout: limits.request_timeout,
            ..RetryConfig::default()
        };
        // A config key, not `with_client_options`, which would drop the environment's
        // client settings (AWS_ALLOW_HTTP, AWS_PROXY_URL, ...) and `allow_http` above.
        let timeout = format!("{}s", limits.request_timeout.as_secs());
        let store = builder
            .with_retry(retry)
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), timeout)
            .build()
            .map_err(|e| ExportError::Object(e.to_string()))?;
        Ok(ObjectTarget::new(Arc::new(store), prefix, format, limits))
    }

    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        format: ExportFormat,
        limits: ObjectLimits,
    ) -> ObjectTarget {
        ObjectTarget {
            store,
            prefix: prefix.to_owned(),
            format,
            limits,
            pending_after: 0,
            pending: Vec::new(),
        }
    }

    /// Writes the next object if one is planned or due; returns how many records it holds
    /// (0 when nothing was written this round).
    pub async fn ship_once(
        &mut self,
        uri: &str,
        store: &dyn AuditStore,
    ) -> Result<usize, ExportError> {
        let plan_key = plan_key(uri);
        let cursor = store.audit_cursor(uri).await?;
        let planned = store.audit_cursor(&plan_key).await?;
        if planned > cursor {
            // A range planned by an earlier attempt (here, before a crash or on another
            // replica): that range exactly, so the same key gets the same bytes.
            self.pending.clear();
            let lines = self.planned_lines(store, cursor, planned).await?;
            return self.write_and_commit(uri, store, lines, planned).await;
        }
        if self.pending_after != cursor {
            self.pending.clear();
            self.pending_after = cursor;
        }
        self.top_up(store).await?;
        let Some(count) = cut(&self.pending, &self.limits, Utc::now().timestamp_micros()) else {
            return Ok(0);
        };
        let lines: Vec<Line> = self.pending.drain(..count).collect();
        let Some(last) = lines.last().map(|l| l.id) else {
            return Ok(0);
        };
        store.move_audit_cursor(&plan_key, last).await?;
        let shipped = self.write_and_commit(uri, store, lines, last).await?;
        self.pending_after = last;
        Ok(shipped)
    }

    /// Reads records after the pending ones until `records_max` are held, unless they already
    /// fill `bytes_max`.
    async fn top_up(&mut self, store: &dyn AuditStore) -> Result<(), ExportError> {
        let room = self.limits.records_max.saturating_sub(self.pending.len());
        let bytes: usize = self.pending.iter().map(|l| l.text.len()).sum();
        if room == 0 || bytes >= self.limits.bytes_max {
            return Ok(());
        }
        let after = self.pending.last().map_or(self.pending_after, |l| l.id);
        let records = store.audit_after(after, room).await?;
        self.pending
            .extend(records.iter().map(|r| line(self.format, r)));
        Ok(())
    }

    /// The records of `(cursor, planned]`, read in pages of `records_max`.
    async fn planned_lines(
        &self,
        store: &dyn AuditStore,
        cursor: i64,
        planned: i64,
    ) -> Result<Vec<Line>, ExportError> {
        let mut lines = Vec::new();
        let mut after = cursor;
        while after < planned {
            let page = store.audit_after(after, self.limits.records_max).await?;
            let Some(last) = page.last().map(|r| r.id) else {
                break;
            };
            after = last;
            lines.extend(
                page.iter()
                    .filter(|r| r.id <= planned)
                    .map(|r| line(self.format, r)),
            );
        }
        Ok(lines)
    }

    /// PUTs `lines` as one object (none when retention already removed them all), then moves
    /// the cursor to `last`.
    async fn write_and_commit(
        &self,
        uri: &str,
        store: &dyn AuditStore,
        lines: Vec<Line>,
        last: i64,
    ) -> Result<usize, ExportError> {
        if let Some(name) = object_name(&self.prefix, self.format, &lines) {
            let path = Path::parse(&name).map_err(|e| ExportError::Object(e.to_string()))?;
            let body: String = lines.iter().map(|l| l.text.as_str()).collect();
            let attributes =
                Attributes::from_iter([(Attribute::ContentType, content_type(self.format))]);
            let put = self.store.put_opts(
                &path,
                PutPayload::from(body.into_bytes()),
                PutOptions::from(attributes),
            );
            match tokio::time::timeout(self.limits.request_timeout, put).await {
                Ok(result) => result.map_err(|e| ExportError::Object(e.to_string()))?,
                Err(_) => return Err(ExportError::Timeout(self.limits.request_timeout)),
            };
        }
        store.move_audit_cursor(uri, last).await?;
        Ok(lines.len())
    }
}

/// The second cursor of an object destination: the last id of the object being written.
pub fn plan_key(uri: &str) -> String {
    format!("{uri}#planned")
}

/// A record as one line of an object. Syslog lines carry NILVALUE as HOSTNAME: any replica
/// renders the same bytes for the same record.
fn line(format: ExportFormat, record: &AuditRecord) -> Line {
    Line {
        id: record.id,
        logged_at_micros: record.logged_at_micros,
        text: syslog::line(format, &record.entry, &syslog::hostname_field("")),
    }
}

/// How many of the pending lines form the next object, if one is due: when the lines fill
/// `bytes_max` (a line larger than that goes alone) or `records_max`, or the oldest has
/// waited `flush_interval`.
fn cut(pending: &[Line], limits: &ObjectLimits, now_micros: i64) -> Option<usize> {
    let first = pending.first()?;
    let mut bytes = 0usize;
    for (i, line) in pending.iter().enumerate() {
        if i > 0 && bytes.saturating_add(line.text.len()) > limits.bytes_max {
            return Some(i);
        }
        bytes = bytes.saturating_add(line.text.len());
    }
    let waited = now_micros.saturating_sub(first.logged_at_micros);
    let interval = i64::try_from(limits.flush_interval.as_micros()).unwrap_or(i64::MAX);
    (pending.len() >= limits.records_max || bytes >= limits.bytes_max || waited >= interval)
        .then_some(pending.len())
}

/// `prefix/YYYY/MM/DD/FIRST-LAST.jsonl`: the UTC day its first record was logged, then its
/// first and last ids, zero-padded. Every part comes from the stored records.
fn object_name(prefix: &str, format: ExportFormat, lines: &[Line]) -> Option<String> {
    let (first, last) = (lines.first()?, lines.last()?);
    let day = Utc
        .timestamp_micros(first.logged_at_micros)
        .single()
        .map_or_else(
            || "0000/00/00".to_owned(),
            |t| t.format("%Y/%m/%d").to_string(),
        );
    let extension = match format {
        ExportFormat::Json => "jsonl",
        ExportFormat::Syslog => "log",
    };
    Some(format!(
        "{prefix}{day}/{:0w$}-{:0w$}.{extension}",
        first.id,
        last.id,
        w = ID_DIGITS
    ))
}

fn content_type(format: ExportFormat) -> &'static str {
    match format {
        ExportFormat::Json => "application/x-ndjson",
        ExportFormat::Syslog => "text/plain; charset=utf-8",
    }
}

#[cfg(test)]
#[path = "object_tests.rs"]
mod tests;
