//! `caracal audit export`: the stored audit records of a time range, in id order, as JSON
//! lines or RFC 5424 lines, to stdout or a file. Reads the store only; ships nothing.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use argh::FromArgs;
use chrono::{DateTime, Days, NaiveDate, Utc};

use crate::audit::export::local_hostname;
use crate::audit::syslog;
use crate::config::{Config, ExportFormat};

/// Records read per store round trip.
const PAGE_RECORDS: usize = 1_000;

/// the audit log
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "audit")]
pub struct AuditCmd {
    #[argh(subcommand)]
    cmd: Sub,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Sub {
    Export(Export),
}

/// write the audit records that occurred in a time range (UTC)
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "export")]
struct Export {
    /// first instant: YYYY-MM-DD (midnight UTC) or RFC 3339
    #[argh(option)]
    start: String,
    /// end: YYYY-MM-DD (that whole day included) or RFC 3339 (that instant excluded)
    #[argh(option)]
    end: String,
    /// json (default: one record per line) or syslog (RFC 5424 lines)
    #[argh(option, default = "String::from(\"json\")")]
    format: String,
    /// file to write (default: stdout)
    #[argh(option)]
    output: Option<PathBuf>,
}

/// Which end of a range a date or instant is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Start,
    End,
}

/// Unix microseconds of a `--start`/`--end` value: a date is midnight UTC, and as an end the
/// midnight after it (so the day is included); an RFC 3339 instant is taken as is.
fn bound_micros(text: &str, end: End) -> Result<i64, String> {
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = match end {
            End::Start => Some(date),
            End::End => date.checked_add_days(Days::new(1)),
        };
        return day
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp_micros())
            .ok_or_else(|| format!("{text:?} is out of range"));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
        .map_err(|_| format!("{text:?} is neither YYYY-MM-DD nor an RFC 3339 time"))
}

fn parse_format(text: &str) -> Result<ExportFormat, String> {
    match text {
        "json" => Ok(ExportFormat::Json),
        "syslog" => Ok(ExportFormat::Syslog),
        other => Err(format!("unknown format {other:?}: expected json or syslog")),
    }
}

pub async fn run(cmd: AuditCmd, config: &Config) -> anyhow::Result<()> {
    match cmd.cmd {
        Sub::Export(export) => run_export(export, config).await,
    }
}

async fn run_export(cmd: Export, config: &Config) -> anyhow::Result<()> {
    let start =
        bound_micros(&cmd.start, End::Start).map_err(|m| anyhow::anyhow!("--start: {m}"))?;
    let end = bound_micros(&cmd.end, End::End).map_err(|m| anyhow::anyhow!("--end: {m}"))?;
    if end <= start {
        anyhow::bail!("--end must be after --start");
    }
    let format = parse_format(&cmd.format).map_err(|m| anyhow::anyhow!("--format: {m}"))?;
    let store = crate::roles::open_stores(config).await?.audit;
    let hostname = syslog::hostname_field(&local_hostname());
    let mut out: Box<dyn Write + Send> = match &cmd.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("{}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let (mut after, mut written) = (0, 0usize);
    loop {
        let page = store
            .audit_in_range(start, end, after, PAGE_RECORDS)
            .await?;
        for record in &page {
            out.write_all(syslog::line(format, &record.entry, &hostname).as_bytes())?;
        }
        written += page.len();
        match page.last() {
            Some(last) if page.len() == PAGE_RECORDS => after = last.id,
            _ => break,
        }
    }
    out.flush()?;
    if let Some(path) = &cmd.output {
        println!("{written} audit records written to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const DAY: i64 = 86_400_000_000;

    #[test]
    fn a_date_is_midnight_utc_and_an_end_date_includes_its_whole_day() {
        let start = bound_micros("2026-01-02", End::Start).unwrap();
        let end = bound_micros("2026-01-02", End::End).unwrap();
        assert_eq!(start, 1_767_312_000_000_000);
        assert_eq!(end - start, DAY);
    }

    #[test]
    fn an_rfc3339_instant_is_taken_exactly_in_utc() {
        let at = bound_micros("2026-01-02T01:00:00.000001+01:00", End::End).unwrap();
        assert_eq!(at, 1_767_312_000_000_001);
        assert!(bound_micros("02/01/2026", End::Start).is_err());
        assert!(parse_format("xml").is_err());
    }
}
