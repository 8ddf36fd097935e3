//! Unit tests of the aggregate keys, fields and policy windows.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use chrono::TimeZone;
use uuid::Uuid;

use super::*;
use crate::core::events::{Outcome, Source, UnixMicros};
use crate::core::money::Micros;

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
}

fn agent(n: u128) -> AgentId {
    AgentId(Uuid::from_u128(n))
}

fn event(when: DateTime<Utc>, ancestors: Vec<AgentId>, cost: i64) -> MeteringEvent {
    MeteringEvent {
        event_id: Uuid::from_u128(99),
        occurred_at: UnixMicros::from_datetime(when),
        request_id: Uuid::from_u128(98),
        correlation_id: None,
        agent_id: agent(1),
        parent_id: ancestors.first().copied(),
        root_agent_id: ancestors.last().copied().unwrap_or(agent(1)),
        ancestor_ids: ancestors,
        source: Source::Gateway,
        provider: "openai".into(),
        resource: "ft:gpt-4o:acme".into(),
        operation: "chat.completions".into(),
        input_tokens: 120,
        cached_input_tokens: 0,
        cache_write_input_tokens: 0,
        output_tokens: 30,
        calls: 1,
        cost_micros: Micros(cost),
        reserved_micros: Micros(cost),
        currency: Currency::USD,
        estimated: false,
        outcome: Outcome::ALL[0],
        upstream_status: Some(200),
        reservation_id: Uuid::from_u128(97),
        policy_ids: vec![],
        pricebook_version: 1,
        instance: "gw".into(),
        upstream_latency_micros: 0,
        metadata: BTreeMap::new(),
    }
}

#[test]
fn periods_are_named_by_their_utc_start() {
    let t = at(2026, 12, 31, 23, 59);
    let names: Vec<String> = Period::all_of(t).into_iter().map(|p| p.0).collect();
    // 2026-12-31 is a Thursday: ISO week 53 of 2026.
    assert_eq!(
        names,
        ["h2026123123", "d20261231", "w2026W53", "m202612", "t"]
    );
    // 2027-01-01 (Friday) is still in ISO week 2026-W53.
    assert_eq!(Period::week(at(2027, 1, 1, 0, 0)).0, "w2026W53");
    assert_eq!(Period::week(at(2027, 1, 4, 0, 0)).0, "w2027W01");
}

#[test]
fn calendar_windows_are_one_period_rolling_ones_the_hours_they_overlap() {
    let now = at(2026, 12, 6, 10, 7);
    let one = |w| window_periods(w, WindowType::Calendar, now);
    assert_eq!(one(TimeWindow::Hourly), vec![Period::hour(now)]);
    assert_eq!(one(TimeWindow::Daily), vec![Period::day(now)]);
    assert_eq!(one(TimeWindow::Weekly), vec![Period::week(now)]);
    assert_eq!(one(TimeWindow::Monthly), vec![Period::month(now)]);
    assert_eq!(one(TimeWindow::Total), vec![Period::total()]);
    // Rolling hourly at 10:07 covers 09:08..10:08: hours 09 and 10.
    let hourly = window_periods(TimeWindow::Hourly, WindowType::Rolling, now);
    assert_eq!(
        hourly,
        vec![Period::hour(at(2026, 12, 6, 9, 0)), Period::hour(now)]
    );
    // Rolling daily at 10:07 covers 10:15 yesterday .. 10:15 today: 25 hours.
    let daily = window_periods(TimeWindow::Daily, WindowType::Rolling, now);
    assert_eq!(daily.len(), 25);
    assert_eq!(daily[0], Period::hour(at(2026, 12, 5, 10, 0)));
    assert_eq!(daily[24], Period::hour(now));
    // Rolling weekly on an hour boundary: exactly 168 hours.
    let weekly = window_periods(
        TimeWindow::Weekly,
        WindowType::Rolling,
        at(2026, 12, 6, 10, 0),
    );
    assert_eq!(weekly.len(), 168);
}

#[test]
fn an_event_counts_for_its_agent_and_the_tree_of_every_ancestor_in_every_period() {
    let when = at(2026, 12, 6, 10, 7);
    let (parent, root) = (agent(2), agent(3));
    let incs = increments(4, &event(when, vec![parent, root], 1_234_567));
    let spend = |scope, who, period: &Period| -> i64 {
        let key = aggregate_key(4, scope, who, period);
        incs.iter()
            .filter(|i| i.key == key && i.field == "s.USD")
            .map(|i| i.delta)
            .sum()
    };
    for period in Period::all_of(when) {
        assert_eq!(spend(Scope::Own, agent(1), &period), 1_234_567);
        assert_eq!(spend(Scope::Tree, agent(1), &period), 1_234_567);
        assert_eq!(spend(Scope::Tree, parent, &period), 1_234_567);
        assert_eq!(spend(Scope::Tree, root, &period), 1_234_567);
        assert_eq!(
            spend(Scope::Own, parent, &period),
            0,
            "not the parent's own"
        );
    }
    let key = aggregate_key(4, Scope::Own, agent(1), &Period::day(when));
    assert!(key.starts_with("caracal:agg:{m4}:own:"), "{key}");
    let model_spend: Vec<&Increment> = incs
        .iter()
        .filter(|i| i.key == key && i.field == "s.USD@openai/ft:gpt-4o:acme")
        .collect();
    assert_eq!(model_spend.len(), 1);
    let month = aggregate_key(4, Scope::Own, agent(1), &Period::month(when));
    assert!(
        !incs.iter().any(|i| i.key == month && i.field.contains('@')),
        "months keep no per-model fields"
    );
    // Zero measures are not sent (cached tokens here), the event count always is.
    assert!(!incs.iter().any(|i| i.field == "cin"));
    assert_eq!(
        incs.iter()
            .filter(|i| i.key == key && i.field == "n")
            .count(),
        1
    );
}

#[test]
fn totals_read_back_every_field_and_model() {
    let mut totals = Totals::default();
    for inc in increments(0, &event(at(2026, 1, 1, 0, 0), vec![], 500)) {
        if inc
            .key
            .ends_with(":own:00000000-0000-0000-0000-000000000001:d20260101")
        {
            totals.add_field(&inc.field, inc.delta);
        }
    }
    totals.add_field("unknown", 5);
    assert_eq!(totals.spend(Currency::USD), 500);
    assert_eq!((totals.input_tokens, totals.output_tokens), (120, 30));
    assert_eq!((totals.calls, totals.events), (1, 1));
    let model = &totals.models["openai/ft:gpt-4o:acme"];
    assert_eq!(model.spend(Currency::USD), 500);
    assert_eq!(model.output_tokens, 30);
}

#[test]
fn retention_by_period_kind() {
    let r = Retention {
        hour_secs: 1,
        day_secs: 2,
        month_secs: 3,
    };
    let now = at(2026, 2, 3, 4, 5);
    let ttls: Vec<Option<i64>> = Period::all_of(now).iter().map(|p| p.ttl_secs(&r)).collect();
    assert_eq!(ttls, vec![Some(1), Some(2), Some(3), Some(3), None]);
}
