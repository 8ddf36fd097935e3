//! Time arguments of the CLI: `YYYY-MM-DD` (a UTC day) or an RFC 3339 instant. A start date
//! means the start of that day; an end date means the end of that day (the whole day is
//! included); an instant means itself. Ranges are half-open `[start, end)` in Unix micros.

use chrono::{DateTime, NaiveDate, Utc};

/// Which edge of a range an argument gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Start,
    End,
}

/// Parses a start or end argument into Unix microseconds.
pub fn parse_edge(text: &str, edge: Edge) -> Result<i64, String> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = match edge {
            Edge::Start => day,
            Edge::End => day
                .succ_opt()
                .ok_or_else(|| format!("date {text} is out of range"))?,
        };
        let midnight = day
            .and_hms_opt(0, 0, 0)
            .ok_or_else(|| format!("date {text} is out of range"))?;
        return Ok(midnight.and_utc().timestamp_micros());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).timestamp_micros())
        .map_err(|_| {
            format!("{text:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 instant (2026-02-01T12:00:00Z)")
        })
}

/// Parses `[start, end)`; the end must come after the start.
pub fn parse_range(start: &str, end: &str) -> Result<(i64, i64), String> {
    let start_micros = parse_edge(start, Edge::Start)?;
    let end_micros = parse_edge(end, Edge::End)?;
    if end_micros <= start_micros {
        return Err(format!("the end {end} is not after the start {start}"));
    }
    Ok((start_micros, end_micros))
}

/// An RFC 3339 rendering of Unix microseconds (UTC).
pub fn show(micros: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(micros).map_or_else(
        || micros.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_end_date_includes_its_whole_day() {
        let (start, end) = parse_range("2026-02-01", "2026-02-03").unwrap();
        assert_eq!(show(start), "2026-02-01T00:00:00.000000Z");
        assert_eq!(show(end), "2026-02-04T00:00:00.000000Z");
    }

    #[test]
    fn instants_are_taken_as_given_in_utc() {
        let (start, end) =
            parse_range("2026-02-01T10:00:00+02:00", "2026-02-01T09:00:00Z").unwrap();
        assert_eq!(show(start), "2026-02-01T08:00:00.000000Z");
        assert_eq!(show(end), "2026-02-01T09:00:00.000000Z");
    }

    #[test]
    fn nonsense_and_reversed_ranges_are_refused() {
        assert!(parse_range("yesterday", "2026-02-01").is_err());
        assert!(parse_range("2026-02-03", "2026-02-01").is_err());
        assert!(parse_range("2026-02-01T09:00:00Z", "2026-02-01T09:00:00Z").is_err());
    }
}
