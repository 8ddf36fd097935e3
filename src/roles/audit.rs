//! Wiring of the audit role: the audit sink on every topic, one export loop per configured
//! destination and the retention loop, all stopping with the role. No audit logic here
//! (`audit` owns it).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::audit::export::{ExportSettings, Exporter};
use crate::audit::{self, AuditSink};
use crate::bus::EventBus;
use crate::config::{AuditDestination, Config, ExportFormat};
use crate::consume::{self, ConsumerConfig};
use crate::http::Shutdown;
use crate::store::audit::AuditStore;
use crate::store::leases::LeaseStore;

use super::ServeError;

/// The consumer name of the audit role in the lease table and metrics.
pub const CONSUMER: &str = "audit";

/// The audit consumer's settings from config.
pub fn consumer_config(config: &Config) -> ConsumerConfig {
    let mut consumer = ConsumerConfig::new(CONSUMER, audit::topics());
    consumer.lease_ttl = Duration::from_secs(config.consumers.lease_ttl_seconds);
    consumer.renew_every = consumer.lease_ttl / 3;
    consumer.partitions_in_flight =
        usize::try_from(config.consumers.partitions_in_flight).unwrap_or(usize::MAX);
    consumer
}

/// One exporter per configured destination; refuses a destination it cannot build a client
/// for, naming its key, and a format list it cannot honour, before anything starts.
pub fn exporters(config: &Config) -> Result<Vec<Exporter>, ServeError> {
    let audit = &config.consumers.audit_logger;
    let file_format = file_format(config)?;
    let mut settings = ExportSettings::new(file_format, audit.syslog_udp_message_bytes_max);
    settings.object_format = object_format(&audit.export_formats);
    settings.s3 = audit.s3.clone();
    let settings = Arc::new(settings);
    audit
        .destinations
        .iter()
        .enumerate()
        .map(|(i, uri)| {
            let problem = |m: String| {
                ServeError::Config(format!("consumers.auditLogger.destinations[{i}]: {m}"))
            };
            let destination = AuditDestination::parse(uri).map_err(problem)?;
            Exporter::new(uri, destination, Arc::clone(&settings))
                .map_err(|e| problem(e.to_string()))
        })
        .collect()
}

/// The one line format of `file://` destinations. `exportFormats` is what file destinations
/// are written in (syslog destinations always speak RFC 5424): one file takes one format, so a
/// list of several is refused when a file destination is configured, rather than half applied.
fn file_format(config: &Config) -> Result<ExportFormat, ServeError> {
    let audit = &config.consumers.audit_logger;
    let mut formats = audit.export_formats.clone();
    formats.dedup();
    let has_file = audit
        .destinations
        .iter()
        .any(|uri| matches!(AuditDestination::parse(uri), Ok(AuditDestination::File(_))));
    if has_file && formats.len() > 1 {
        return Err(ServeError::Config(
            "consumers.auditLogger.exportFormats lists several formats, but a file:// \
             destination is written in one: list one format (json or syslog); syslog:// \
             destinations always receive RFC 5424"
                .into(),
        ));
    }
    Ok(formats.first().copied().unwrap_or(ExportFormat::Json))
}

/// The line format of `s3://` objects: JSON lines when `exportFormats` lists json (the seeds
/// list json and syslog, and send syslog to their SIEM), syslog lines when it lists only that.
fn object_format(formats: &[ExportFormat]) -> ExportFormat {
    if formats.is_empty() || formats.contains(&ExportFormat::Json) {
        ExportFormat::Json
    } else {
        ExportFormat::Syslog
    }
}

/// Returns the role's task: consumer, exporters and retention, finished together.
pub fn prepare(
    config: &Config,
    store: Arc<dyn AuditStore>,
    leases: Arc<dyn LeaseStore>,
    bus: Arc<dyn EventBus>,
    shutdown: Shutdown,
) -> Result<impl std::future::Future<Output = std::io::Result<()>>, ServeError> {
    let exporters = exporters(config)?;
    let retention_days = config.consumers.audit_logger.retention_days;
    let consumer = consumer_config(config);
    let (leader_tx, leader_rx) = watch::channel(None);
    let sink = Arc::new(AuditSink::new(Arc::clone(&store), leader_tx));
    Ok(async move {
        let mut side = tokio::task::JoinSet::new();
        for exporter in exporters {
            side.spawn(audit::export::run(
                exporter,
                Arc::clone(&store),
                leader_rx.clone(),
                shutdown.clone(),
            ));
        }
        side.spawn(audit::retention::run(
            Arc::clone(&store),
            retention_days,
            leader_rx,
            shutdown.clone(),
        ));
        consume::run(consumer, leases, bus, sink, shutdown).await;
        while side.join_next().await.is_some() {}
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with(formats: &[ExportFormat], destinations: &[&str]) -> Config {
        let mut config = Config::default();
        config.consumers.audit_logger.export_formats = formats.to_vec();
        config.consumers.audit_logger.destinations =
            destinations.iter().map(|d| (*d).to_owned()).collect();
        config
    }

    #[test]
    fn several_formats_for_a_file_destination_are_refused_naming_the_key() {
        let both = [ExportFormat::Json, ExportFormat::Syslog];
        let refused = exporters(&with(&both, &["file:///var/log/a.jsonl"]));
        let message = refused.err().unwrap().to_string();
        assert!(
            message.contains("consumers.auditLogger.exportFormats"),
            "{message}"
        );
        // Without a file destination, or with one format, nothing is left unapplied.
        assert_eq!(
            exporters(&with(&both, &["syslog://siem:514"]))
                .unwrap()
                .len(),
            1
        );
        let one = with(&[ExportFormat::Syslog], &["file:///var/log/a.log"]);
        assert_eq!(file_format(&one).unwrap(), ExportFormat::Syslog);
    }

    #[test]
    fn the_seeds_s3_and_syslog_destinations_start_with_json_objects() {
        let both = [ExportFormat::Json, ExportFormat::Syslog];
        let seeds = with(
            &both,
            &[
                "s3://audit-logs-bucket/caracal/",
                "syslog://siem.example.com:514",
            ],
        );
        assert_eq!(exporters(&seeds).unwrap().len(), 2);
        assert_eq!(object_format(&both), ExportFormat::Json);
        assert_eq!(object_format(&[ExportFormat::Syslog]), ExportFormat::Syslog);
    }
}
