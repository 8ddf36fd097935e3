//! Ships the audit log to one destination (a file, a syslog server over UDP or TCP, an object
//! store through `object`) in id order from that destination's cursor, at least once: the
//! cursor moves only after the write succeeded (a file is fsynced first; objects are exactly
//! once, see `object`). Never touches the consumer: a failing destination is logged, counted
//! and retried with backoff while consumption goes on.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::watch;

use super::object::ObjectTarget;
use super::syslog;
use super::{pause, wait_for_leadership};
use crate::config::{AuditDestination, AuditS3Config, ExportFormat};
use crate::http::Shutdown;
use crate::store::audit::{AuditRecord, AuditStore};
use crate::store::leases::Fence;
use crate::store::StoreError;

/// How every destination is shipped to. Every wait and batch is bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSettings {
    /// Most records read and written per round.
    pub batch_records_max: usize,
    /// Pause when a destination is caught up.
    pub idle_poll: Duration,
    /// First and longest pause after a failure (doubling in between).
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Longest a network connect or send may take.
    pub io_timeout: Duration,
    /// Largest UDP syslog datagram.
    pub udp_message_bytes_max: usize,
    /// The line format of `file://` destinations.
    pub file_format: ExportFormat,
    /// The line format of `s3://` objects and how they are reached and cut.
    pub object_format: ExportFormat,
    pub s3: AuditS3Config,
    /// This host as RFC 5424's HOSTNAME (already `syslog::hostname_field`).
    pub hostname: String,
}

impl ExportSettings {
    pub fn new(file_format: ExportFormat, udp_message_bytes_max: usize) -> ExportSettings {
        ExportSettings {
            batch_records_max: 500,
            idle_poll: Duration::from_millis(200),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            io_timeout: Duration::from_secs(10),
            udp_message_bytes_max,
            file_format,
            object_format: file_format,
            s3: AuditS3Config::default(),
            hostname: syslog::hostname_field(&local_hostname()),
        }
    }
}

/// This machine's name: `$HOSTNAME`, else the kernel's, else empty (NILVALUE in syslog).
pub fn local_hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("object store: {0}")]
    Object(String),
}

enum Target {
    File(PathBuf),
    Udp {
        host: String,
        port: u16,
        socket: Option<UdpSocket>,
    },
    Tcp {
        host: String,
        port: u16,
        stream: Option<TcpStream>,
    },
    Object(Box<ObjectTarget>),
}

/// One destination and its open connection, if any.
pub struct Exporter {
    uri: String,
    target: Target,
    settings: Arc<ExportSettings>,
}

impl Exporter {
    /// Fails when an object-store client cannot be built from the settings.
    pub fn new(
        uri: &str,
        destination: AuditDestination,
        settings: Arc<ExportSettings>,
    ) -> Result<Exporter, ExportError> {
        let target =
            match destination {
                AuditDestination::File(path) => Target::File(path),
                AuditDestination::SyslogUdp { host, port } => Target::Udp {
                    host,
                    port,
                    socket: None,
                },
                AuditDestination::SyslogTcp { host, port } => Target::Tcp {
                    host,
                    port,
                    stream: None,
                },
                AuditDestination::S3 { bucket, prefix } => Target::Object(Box::new(
                    ObjectTarget::s3(&bucket, &prefix, &settings.s3, settings.object_format)?,
                )),
            };
        Ok(Exporter {
            uri: uri.to_owned(),
            target,
            settings,
        })
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Ships the next batch after the cursor; returns how many records went out.
    pub async fn ship_once(&mut self, store: &dyn AuditStore) -> Result<usize, ExportError> {
        if let Target::Object(target) = &mut self.target {
            return target.ship_once(&self.uri, store).await;
        }
        let cursor = store.audit_cursor(&self.uri).await?;
        let records = store
            .audit_after(cursor, self.settings.batch_records_max)
            .await?;
        let Some(last) = records.last().map(|r| r.id) else {
            return Ok(0);
        };
        debug_assert!(last > cursor, "a batch after the cursor ends before it");
        if let Err(e) = self.write(&records).await {
            self.disconnect();
            return Err(e);
        }
        store.move_audit_cursor(&self.uri, last).await?;
        Ok(records.len())
    }

    fn disconnect(&mut self) {
        match &mut self.target {
            Target::File(_) | Target::Object(_) => {}
            Target::Udp { socket, .. } => *socket = None,
            Target::Tcp { stream, .. } => *stream = None,
        }
    }

    async fn write(&mut self, records: &[AuditRecord]) -> Result<(), ExportError> {
        let s = Arc::clone(&self.settings);
        match &mut self.target {
            // Written by `ObjectTarget::ship_once`, never through here.
            Target::Object(_) => {}
            Target::File(path) => {
                let text: String = records
                    .iter()
                    .map(|r| syslog::line(s.file_format, &r.entry, &s.hostname))
                    .collect();
                let path = path.clone();
                tokio::task::spawn_blocking(move || append_lines(&path, text.as_bytes()))
                    .await
                    .map_err(|e| ExportError::Io(std::io::Error::other(e.to_string())))??;
            }
            Target::Udp { host, port, socket } => {
                if socket.is_none() {
                    *socket = Some(timed(s.io_timeout, udp_socket(host, *port)).await?);
                }
                if let Some(socket) = socket {
                    for r in records {
                        let msg =
                            syslog::message_capped(&r.entry, &s.hostname, s.udp_message_bytes_max);
                        let sent = timed(s.io_timeout, socket.send(msg.as_bytes())).await?;
                        if sent != msg.len() {
                            return Err(ExportError::Io(std::io::Error::other(format!(
                                "sent {sent} of {} bytes",
                                msg.len()
                            ))));
                        }
                    }
                }
            }
            Target::Tcp { host, port, stream } => {
                if stream.is_none() {
                    let connect = TcpStream::connect((host.as_str(), *port));
                    *stream = Some(timed(s.io_timeout, connect).await?);
                }
                if let Some(stream) = stream {
                    let mut frames = Vec::new();
                    for r in records {
                        frames.extend(syslog::octet_counted(&syslog::message(
                            &r.entry,
                            &s.hostname,
                        )));
                    }
                    timed(s.io_timeout, stream.write_all(&frames)).await?;
                    timed(s.io_timeout, stream.flush()).await?;
                }
            }
        }
        Ok(())
    }
}

async fn timed<T>(
    limit: Duration,
    work: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, ExportError> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ExportError::Timeout(limit)),
    }
}

async fn udp_socket(host: &str, port: u16) -> std::io::Result<UdpSocket> {
    let addr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{host} resolves to no address")))?;
    let local = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(addr).await?;
    Ok(socket)
}

/// Appends `bytes` to the file and fsyncs it (and, for a new file, its directory). A line torn
/// by a crash mid-write is ended first, so it never glues onto the next record.
fn append_lines(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let was_empty = file.metadata()?.len() == 0;
    if !was_empty {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::End(-1))?;
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            file.write_all(b"\n")?;
        }
    }
    file.write_all(bytes)?;
    file.sync_data()?;
    if let (true, Some(parent)) = (was_empty, parent) {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Ships to one destination while this replica leads the audit consumer, until shutdown.
/// A batch in flight when shutdown comes is finished (its cursor moved) before returning.
pub async fn run(
    mut exporter: Exporter,
    store: Arc<dyn AuditStore>,
    mut leader: watch::Receiver<Option<Fence>>,
    mut shutdown: Shutdown,
) {
    let settings = Arc::clone(&exporter.settings);
    let label = exporter.uri.clone();
    let mut backoff = settings.backoff_min;
    tracing::info!(destination = %label, "audit export starting");
    // Registered at zero, so alerts on their rate see the series before the first failure.
    metrics::counter!("caracal_audit_exported_records_total", "destination" => label.clone())
        .increment(0);
    metrics::counter!("caracal_audit_export_failures_total", "destination" => label.clone())
        .increment(0);
    while !shutdown.is_requested() {
        if !wait_for_leadership(&mut leader, &mut shutdown).await {
            continue;
        }
        match exporter.ship_once(store.as_ref()).await {
            Ok(0) => pause(settings.idle_poll, &mut shutdown).await,
            Ok(shipped) => {
                backoff = settings.backoff_min;
                metrics::counter!("caracal_audit_exported_records_total", "destination" => label.clone())
                    .increment(shipped as u64);
            }
            Err(e) => {
                tracing::warn!(destination = %label, error = %e, retry_in = ?backoff, "audit export failed; retrying");
                metrics::counter!("caracal_audit_export_failures_total", "destination" => label.clone())
                    .increment(1);
                pause(backoff, &mut shutdown).await;
                backoff = backoff.saturating_mul(2).min(settings.backoff_max);
            }
        }
    }
    tracing::info!(destination = %label, "audit export stopped");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_torn_last_line_is_ended_before_new_lines_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/audit.jsonl");
        append_lines(&path, b"{\"a\":1}\n").unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"torn")
            .unwrap();
        append_lines(&path, b"{\"b\":2}\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"torn\n{\"b\":2}\n");
    }
}
