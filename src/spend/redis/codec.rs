//! How a hold is laid out in its Redis hash and in the expiry index, and read back. Field
//! names are short (one hash per live call); every instant is Unix microseconds, every amount
//! decimal micro-units. No I/O.

use chrono::{DateTime, Utc};
use fred::prelude::Value;
use uuid::Uuid;

use crate::core::agent::AgentId;
use crate::core::events::Source;
use crate::core::money::{Currency, Micros};
use crate::core::policy::PolicyId;
use crate::spend::{HoldId, HoldInfo, HoldKey, ReserveRequest, SpendError};

/// Field/value pairs of a hold's hash.
pub(super) const HOLD_FIELDS_MAX: usize = 10;

/// The hash fields of a new hold, as field/value pairs.
pub(super) fn hold_fields(
    req: &ReserveRequest,
    amount: Micros,
    charged: &[(PolicyId, DateTime<Utc>)],
) -> Vec<String> {
    info_fields(&HoldInfo {
        hold_id: req.hold_id,
        agent_id: req.chain.agent().id,
        ancestor_ids: req.chain.members().iter().skip(1).map(|a| a.id).collect(),
        root_agent_id: req.chain.root().id,
        resource: req.resource.clone(),
        source: req.source,
        operation: req.operation.clone(),
        amount,
        currency: req.estimate.currency,
        charged: charged.to_vec(),
        reserved_at: req.now,
        expires_at: req.expires_at,
    })
}

/// The hash fields of a hold as recorded (what `parse_hold` reads back), as field/value pairs.
pub(super) fn info_fields(hold: &HoldInfo) -> Vec<String> {
    let ancestors: Vec<String> = hold.ancestor_ids.iter().map(|a| a.to_string()).collect();
    let charged: Vec<String> = hold
        .charged
        .iter()
        .map(|(policy, bucket)| format!("{policy}@{}", bucket.timestamp_micros()))
        .collect();
    let fields = [
        ("ag", hold.agent_id.to_string()),
        ("an", ancestors.join(",")),
        ("re", hold.resource.clone()),
        ("so", hold.source.as_str().to_owned()),
        ("op", hold.operation.clone()),
        ("am", hold.amount.get().to_string()),
        ("cu", hold.currency.as_str().to_owned()),
        ("ch", charged.join(",")),
        ("ra", hold.reserved_at.timestamp_micros().to_string()),
        ("ex", hold.expires_at.timestamp_micros().to_string()),
    ];
    debug_assert_eq!(fields.len(), HOLD_FIELDS_MAX);
    fields
        .into_iter()
        .flat_map(|(k, v)| [k.to_owned(), v])
        .collect()
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> SpendError {
    SpendError::Corrupt(format!("redis hold {what}: {detail}"))
}

fn instant(text: &str) -> Result<DateTime<Utc>, SpendError> {
    let micros: i64 = text.parse().map_err(|e| corrupt("time", e))?;
    DateTime::from_timestamp_micros(micros).ok_or_else(|| corrupt("time", micros))
}

fn agent(text: &str) -> Result<AgentId, SpendError> {
    Uuid::parse_str(text)
        .map(AgentId)
        .map_err(|e| corrupt("agent id", e))
}

/// A hold read back from its flat `HGETALL` reply.
pub(super) fn parse_hold(key: &HoldKey, flat: &[Value]) -> Result<HoldInfo, SpendError> {
    let field = |name: &str| -> Result<String, SpendError> {
        flat.chunks(2)
            .find(|pair| pair.first().and_then(Value::as_string).as_deref() == Some(name))
            .and_then(|pair| pair.get(1).and_then(Value::as_string))
            .ok_or_else(|| corrupt("field missing", name))
    };
    let ancestors = field("an")?;
    let charged = field("ch")?;
    let source = field("so")?;
    Ok(HoldInfo {
        hold_id: key.hold_id,
        agent_id: agent(&field("ag")?)?,
        ancestor_ids: ancestors
            .split(',')
            .filter(|s| !s.is_empty())
            .map(agent)
            .collect::<Result<_, _>>()?,
        root_agent_id: key.root_agent_id,
        resource: field("re")?,
        source: Source::from_symbol(&source).ok_or_else(|| corrupt("source", &source))?,
        operation: field("op")?,
        amount: Micros(field("am")?.parse().map_err(|e| corrupt("amount", e))?),
        currency: Currency::parse(&field("cu")?).map_err(|e| corrupt("currency", e))?,
        charged: charged
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|entry| {
                let (policy, bucket) = entry
                    .split_once('@')
                    .ok_or_else(|| corrupt("charged bucket", entry))?;
                let policy = Uuid::parse_str(policy).map_err(|e| corrupt("policy id", e))?;
                Ok((PolicyId(policy), instant(bucket)?))
            })
            .collect::<Result<_, SpendError>>()?,
        reserved_at: instant(&field("ra")?)?,
        expires_at: instant(&field("ex")?)?,
    })
}

/// The hold an expiry index member (`<root>/<hold>`) names.
pub(super) fn parse_member(member: &str) -> Result<HoldKey, SpendError> {
    let (root, hold) = member
        .split_once('/')
        .ok_or_else(|| corrupt("index member", member))?;
    Ok(HoldKey {
        root_agent_id: agent(root)?,
        hold_id: HoldId(Uuid::parse_str(hold).map_err(|e| corrupt("hold id", e))?),
    })
}
