//! The pure part of the metrics role: which aggregate keys and fields one metering event adds
//! to (per agent and per agent tree, per UTC hour, day, ISO week, month and in total, per
//! provider and model), and which aggregate periods a policy's current window covers. No I/O,
//! no clock: times are parameters.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

use crate::core::agent::AgentId;
use crate::core::events::MeteringEvent;
use crate::core::money::Currency;
use crate::core::policy::{TimeWindow, WindowType};
use crate::core::window::current_frame;

/// Whose spend an aggregate holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// The agent's own calls.
    Own,
    /// The agent's calls and every descendant's (a team's budget view).
    Tree,
}

impl Scope {
    fn tag(self) -> &'static str {
        match self {
            Scope::Own => "own",
            Scope::Tree => "tree",
        }
    }
}

/// One aggregation period, named by its UTC start: `h2026120623`, `d20261206`, `w2026W49`
/// (ISO week), `m202612`, or `t` (all time).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period(pub String);

/// How long each kind of aggregate is kept after its last write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub hour_secs: i64,
    pub day_secs: i64,
    /// Weeks and months (a monthly window needs its month's key for a month).
    pub month_secs: i64,
}

impl Period {
    pub fn hour(at: DateTime<Utc>) -> Period {
        Period(format!("h{}", at.format("%Y%m%d%H")))
    }
    pub fn day(at: DateTime<Utc>) -> Period {
        Period(format!("d{}", at.format("%Y%m%d")))
    }
    pub fn week(at: DateTime<Utc>) -> Period {
        let week = at.iso_week();
        Period(format!("w{}W{:02}", week.year(), week.week()))
    }
    pub fn month(at: DateTime<Utc>) -> Period {
        Period(format!("m{}", at.format("%Y%m")))
    }
    pub fn total() -> Period {
        Period("t".to_owned())
    }

    /// Every period a charge made at `at` counts in.
    pub fn all_of(at: DateTime<Utc>) -> [Period; 5] {
        [
            Period::hour(at),
            Period::day(at),
            Period::week(at),
            Period::month(at),
            Period::total(),
        ]
    }

    /// Whether per-provider/model fields are kept in this period (hours and days).
    pub fn keeps_models(&self) -> bool {
        self.0.starts_with('h') || self.0.starts_with('d')
    }

    /// Seconds the aggregate is kept after its last write; `None`: forever (the total).
    pub fn ttl_secs(&self, retention: &Retention) -> Option<i64> {
        match self.0.chars().next() {
            Some('h') => Some(retention.hour_secs),
            Some('d') => Some(retention.day_secs),
            Some('w') | Some('m') => Some(retention.month_secs),
            _ => None,
        }
    }
}

/// The periods whose sum is a policy's spend in its window containing `now`. A calendar window
/// is exactly one period; a rolling window is read as the whole UTC hours it overlaps (so it
/// can only over-state, never hide, the rolling spend: the hourly aggregates are the finest).
pub fn window_periods(window: TimeWindow, kind: WindowType, now: DateTime<Utc>) -> Vec<Period> {
    match (window, kind) {
        (TimeWindow::Total, _) => vec![Period::total()],
        (TimeWindow::Hourly, WindowType::Calendar) => vec![Period::hour(now)],
        (TimeWindow::Daily, WindowType::Calendar) => vec![Period::day(now)],
        (TimeWindow::Weekly, WindowType::Calendar) => vec![Period::week(now)],
        (TimeWindow::Monthly, WindowType::Calendar) => vec![Period::month(now)],
        (_, WindowType::Rolling) => {
            let frame = current_frame(window, kind, now);
            let mut hour = floor_hour(frame.start);
            let mut periods = Vec::new();
            while hour < frame.end {
                periods.push(Period::hour(hour));
                hour += Duration::hours(1);
            }
            periods
        }
    }
}

fn floor_hour(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(at)
}

/// The Redis key of one aggregate, under the hash tag of the consumed partition
/// (`caracal:agg:{m<partition>}:…`): one batch's keys, its offset and its fence share a slot.
pub fn aggregate_key(partition: i32, scope: Scope, agent: AgentId, period: &Period) -> String {
    format!(
        "{}:{}:{agent}:{}",
        partition_prefix(partition),
        scope.tag(),
        period.0
    )
}

/// `caracal:agg:{m<partition>}`: every key of one consumed partition.
pub fn partition_prefix(partition: i32) -> String {
    format!("caracal:agg:{{m{partition}}}")
}

/// Field names of an aggregate hash. Model fields are `<measure>@<provider>/<resource>`.
pub mod field {
    use crate::core::money::Currency;

    pub const INPUT_TOKENS: &str = "in";
    pub const CACHED_INPUT_TOKENS: &str = "cin";
    pub const CACHE_WRITE_INPUT_TOKENS: &str = "cwin";
    pub const OUTPUT_TOKENS: &str = "out";
    pub const CALLS: &str = "calls";
    pub const EVENTS: &str = "n";

    /// Spend in micro-units of `currency`.
    pub fn spend(currency: Currency) -> String {
        format!("s.{currency}")
    }

    /// `measure` of one provider and model (or MCP server/tool).
    pub fn model(measure: &str, provider: &str, resource: &str) -> String {
        format!("{measure}@{provider}/{resource}")
    }
}

/// One addition to one field of one aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Increment {
    pub key: String,
    pub field: String,
    pub delta: i64,
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Everything `event`, consumed from `partition`, adds: its agent's own aggregates, and the
/// tree aggregates of the agent and of each ancestor, in every period of its UTC time.
pub fn increments(partition: i32, event: &MeteringEvent) -> Vec<Increment> {
    let at = event
        .occurred_at
        .to_datetime()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let measures = measures(event);
    let mut owners: Vec<(Scope, AgentId)> = vec![(Scope::Own, event.agent_id)];
    owners.push((Scope::Tree, event.agent_id));
    for ancestor in &event.ancestor_ids {
        if !owners.contains(&(Scope::Tree, *ancestor)) {
            owners.push((Scope::Tree, *ancestor));
        }
    }
    let mut out = Vec::new();
    for period in Period::all_of(at) {
        for (scope, agent) in &owners {
            let key = aggregate_key(partition, *scope, *agent, &period);
            for (field, delta) in &measures {
                if *delta == 0 && field != field::EVENTS {
                    continue;
                }
                out.push(Increment {
                    key: key.clone(),
                    field: field.clone(),
                    delta: *delta,
                });
                if period.keeps_models() {
                    out.push(Increment {
                        key: key.clone(),
                        field: field::model(field, &event.provider, &event.resource),
                        delta: *delta,
                    });
                }
            }
        }
    }
    out
}

/// The measures one event adds, by field name.
fn measures(event: &MeteringEvent) -> Vec<(String, i64)> {
    vec![
        (field::spend(event.currency), event.cost_micros.get()),
        (field::INPUT_TOKENS.to_owned(), count(event.input_tokens)),
        (
            field::CACHED_INPUT_TOKENS.to_owned(),
            count(event.cached_input_tokens),
        ),
        (
            field::CACHE_WRITE_INPUT_TOKENS.to_owned(),
            count(event.cache_write_input_tokens),
        ),
        (field::OUTPUT_TOKENS.to_owned(), count(event.output_tokens)),
        (field::CALLS.to_owned(), count(event.calls)),
        (field::EVENTS.to_owned(), 1),
    ]
}

/// An aggregate read back: totals, and the same per provider/model where the period keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    /// Micro-units by currency code.
    pub spend_micros: std::collections::BTreeMap<String, i64>,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_write_input_tokens: i64,
    pub output_tokens: i64,
    pub calls: i64,
    pub events: i64,
    /// `provider/resource` → its own totals (no nested models).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub models: std::collections::BTreeMap<String, Totals>,
}

impl Totals {
    /// Adds one hash field as Redis returned it; unknown fields are ignored.
    pub fn add_field(&mut self, name: &str, value: i64) {
        if let Some((measure, model)) = name.split_once('@') {
            self.models
                .entry(model.to_owned())
                .or_default()
                .add_field(measure, value);
            return;
        }
        let slot = match name {
            field::INPUT_TOKENS => &mut self.input_tokens,
            field::CACHED_INPUT_TOKENS => &mut self.cached_input_tokens,
            field::CACHE_WRITE_INPUT_TOKENS => &mut self.cache_write_input_tokens,
            field::OUTPUT_TOKENS => &mut self.output_tokens,
            field::CALLS => &mut self.calls,
            field::EVENTS => &mut self.events,
            other => match other.strip_prefix("s.") {
                Some(currency) => self.spend_micros.entry(currency.to_owned()).or_default(),
                None => return,
            },
        };
        *slot = slot.saturating_add(value);
    }

    /// Spend in `currency` (0 when none).
    pub fn spend(&self, currency: Currency) -> i64 {
        self.spend_micros
            .get(currency.as_str())
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
