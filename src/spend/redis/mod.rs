//! `RedisSpend`: the spend cache shared by every gateway replica. Each reservation, settlement
//! and extension is one Lua script over the keys of one agent tree, all under the tree's hash
//! tag (`caracal:{<root>}:…`), so two replicas racing for the last dollar cannot both win and
//! Redis Cluster accepts every script. Holds are stored under their id (a retried call never
//! charges twice) and indexed for expiry in `expiry_shards` sorted sets. Knows nothing of HTTP
//! or Kafka; Redis is a cache here, the ledger is the record (`rebuild`: a Redis that lost its
//! data is rebuilt from it).

mod codec;
pub(crate) mod connect;
mod rebuild;
#[cfg(test)]
mod rebuild_tests;
mod scripts;
mod target;
#[cfg(test)]
pub(crate) mod tests;
pub(crate) mod tls;

pub use self::target::{RedisLimits, RedisTarget, RedisTlsFiles};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fred::prelude::{ClientLike, ConfigInterface, Pool, Value};
use fred::types::scripts::Script;

use self::codec::{hold_fields, parse_hold, HOLD_FIELDS_MAX};
use self::rebuild::{tombstone_key, EpochView};
use super::{
    EpochState, HoldInfo, HoldKey, Reservation, ReserveOutcome, ReserveRequest, Settlement,
    SpendCache, SpendError, SpendRecord,
};
use crate::core::agent::AgentId;
use crate::core::decision::{decide, Decision, DenyReason, PolicyUsage};
use crate::core::money::Micros;
use crate::core::policy::{BudgetPolicy, PolicyId};
use crate::core::window::{charge_bucket, current_frame};

/// Largest amount Lua compares exactly (doubles): 2^53 micro-units.
const LUA_EXACT_MAX: i64 = 1 << 53;
/// Settled buckets older than the frame at `now` minus this are pruned (as the local cache).
const PRUNE_LAG_SECS: i64 = 300;

struct Scripts {
    reserve: Script,
    settle: Script,
    extend: Script,
    read_hold: Script,
    due: Script,
    index: Script,
    nonce: Script,
    usage: Script,
    epoch: Script,
    version: Script,
    seed: Script,
    reassert: Script,
}

pub struct RedisSpend {
    pool: Pool,
    scripts: Scripts,
    limits: RedisLimits,
    /// The epoch of the data as this process last read it.
    epoch: std::sync::Mutex<EpochView>,
    /// Where settled spend is rebuilt from.
    record: std::sync::Arc<dyn SpendRecord>,
    /// Held while this process seeds policies.
    seeding: tokio::sync::Mutex<()>,
}

fn unavailable(e: impl std::fmt::Display) -> SpendError {
    SpendError::Unavailable(format!("redis: {e}"))
}

impl RedisSpend {
    /// Connects, refuses a server that may evict keys, loads the scripts and reads the epoch
    /// (starting one in a new or emptied Redis). Policies are seeded from `record` on first use
    /// in each epoch.
    pub async fn open(
        target: &RedisTarget,
        limits: RedisLimits,
        record: std::sync::Arc<dyn SpendRecord>,
    ) -> Result<RedisSpend, SpendError> {
        let pool = connect::connect(target, &limits).await?;
        refuse_eviction(&pool).await?;
        let spend = RedisSpend {
            pool,
            scripts: Scripts {
                reserve: Script::from_lua(scripts::RESERVE),
                settle: Script::from_lua(scripts::SETTLE),
                extend: Script::from_lua(scripts::EXTEND),
                read_hold: Script::from_lua(scripts::READ_HOLD),
                due: Script::from_lua(scripts::DUE),
                index: Script::from_lua(scripts::INDEX),
                nonce: Script::from_lua(scripts::NONCE),
                usage: Script::from_lua(scripts::USAGE),
                epoch: Script::from_lua(scripts::EPOCH),
                version: Script::from_lua(scripts::VERSION),
                seed: Script::from_lua(scripts::SEED),
                reassert: Script::from_lua(scripts::REASSERT),
            },
            limits,
            epoch: std::sync::Mutex::new(EpochView::new()),
            record,
            seeding: tokio::sync::Mutex::new(()),
        };
        spend.observe_epoch().await?;
        Ok(spend)
    }

    async fn run(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<String>,
    ) -> Result<Value, SpendError> {
        run_on(self.pool.next(), script, keys, args).await
    }

    /// The expiry index holding `root`'s holds.
    fn index_key(&self, root: AgentId) -> String {
        let shard = shard_of(root, self.limits.expiry_shards);
        format!("caracal:{{x{shard}}}:expiry")
    }

    async fn set_index(&self, key: &HoldKey, score_micros: i64) -> Result<(), SpendError> {
        self.set_index_on(self.pool.next(), key, score_micros).await
    }

    /// Sets a hold's expiry index entry (0 removes it) on `client`: commands sent on one client
    /// keep their order, so an entry written before a script that follows it on the same
    /// client is written first, without waiting a round trip for it.
    async fn set_index_on(
        &self,
        client: &fred::prelude::Client,
        key: &HoldKey,
        score_micros: i64,
    ) -> Result<(), SpendError> {
        let member = format!("{}/{}", key.root_agent_id, key.hold_id);
        let args = vec![member, score_micros.to_string()];
        let index = vec![self.index_key(key.root_agent_id)];
        run_on(client, &self.scripts.index, index, args)
            .await
            .map(drop)
    }

    async fn read_hold(&self, key: &HoldKey) -> Result<Option<HoldInfo>, SpendError> {
        let flat = self
            .run(&self.scripts.read_hold, vec![hold_key(key)], vec![])
            .await?
            .into_array();
        if flat.is_empty() {
            return Ok(None);
        }
        parse_hold(key, &flat).map(Some)
    }

    /// Index entries of `shard` with a score in `[min, max]`, lowest first.
    async fn due(
        &self,
        shard: u32,
        min: &str,
        max: &str,
        count: usize,
    ) -> Result<Vec<(HoldKey, i64)>, SpendError> {
        let key = format!("caracal:{{x{shard}}}:expiry");
        let args = vec![min.to_owned(), max.to_owned(), count.to_string()];
        let flat = self
            .run(&self.scripts.due, vec![key], args)
            .await?
            .into_array();
        flat.chunks(2)
            .map(|pair| {
                let member = pair.first().and_then(Value::as_string).unwrap_or_default();
                let score = pair.get(1).and_then(Value::as_f64).unwrap_or(0.0) as i64;
                codec::parse_member(&member).map(|k| (k, score))
            })
            .collect()
    }
}

async fn run_on(
    client: &fred::prelude::Client,
    script: &Script,
    keys: Vec<String>,
    args: Vec<String>,
) -> Result<Value, SpendError> {
    script
        .evalsha_with_reload(client, keys, args)
        .await
        .map_err(unavailable)
}

/// Refuses a Redis whose eviction policy may drop holds or spend (any `allkeys-*`).
pub(crate) async fn refuse_eviction(pool: &Pool) -> Result<(), SpendError> {
    let reply: Vec<String> = pool
        .next()
        .config_get("maxmemory-policy")
        .await
        .map_err(unavailable)?;
    let policy = reply.get(1).cloned().unwrap_or_default();
    if policy.starts_with("allkeys") {
        return Err(SpendError::Invalid(format!(
            "redis maxmemory-policy is {policy}: it would evict budget holds and spend (overspend); \
             set maxmemory-policy noeviction (or a volatile-* policy)"
        )));
    }
    Ok(())
}

/// The shard of a tree: a stable hash of its root id.
fn shard_of(root: AgentId, shards: u32) -> u32 {
    let hash = root
        .0
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    u32::try_from(hash % u64::from(shards.max(1))).unwrap_or(0)
}

fn tree(root: AgentId) -> String {
    format!("caracal:{{{root}}}")
}

fn hold_key(key: &HoldKey) -> String {
    format!("{}:h:{}", tree(key.root_agent_id), key.hold_id)
}

fn policy_prefix(root: AgentId) -> String {
    format!("{}:p:", tree(root))
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn exact(what: &str, value: i64) -> Result<String, SpendError> {
    if value.abs() >= LUA_EXACT_MAX {
        return Err(SpendError::Invalid(format!(
            "{what} {value} is beyond the 2^53 micro-units the Redis spend cache compares exactly"
        )));
    }
    Ok(value.to_string())
}

/// The active policies of a request, without duplicates, and their usages at zero.
fn zero_usages(req: &ReserveRequest) -> Vec<PolicyUsage> {
    let mut seen: Vec<PolicyId> = Vec::new();
    req.policies
        .iter()
        .filter(|p| p.spec.active)
        .filter(|p| {
            let new = !seen.contains(&p.id);
            seen.push(p.id);
            new
        })
        .map(|p| PolicyUsage {
            policy: p.clone(),
            frame: current_frame(p.spec.time_window, p.spec.window_type, req.now),
            settled: Micros::ZERO,
            reserved: Micros::ZERO,
        })
        .collect()
}

/// The buckets a hold charges: (policy, bucket start).
type Charged = Vec<(PolicyId, DateTime<Utc>)>;

/// The script's keys and arguments for each evaluated policy, in evaluation order, and the
/// buckets a hold charges.
fn policy_args(
    req: &ReserveRequest,
    usages: &[PolicyUsage],
    order: &Decision,
) -> Result<(Vec<String>, Vec<String>, Charged), SpendError> {
    let prefix = policy_prefix(req.chain.root().id);
    let lag = req.now - chrono::Duration::seconds(PRUNE_LAG_SECS);
    let (mut keys, mut args, mut charged) = (Vec::new(), Vec::new(), Vec::new());
    for evaluation in &order.evaluations {
        let Some(usage) = usages.iter().find(|u| u.policy.id == evaluation.policy_id) else {
            continue;
        };
        let spec = &usage.policy.spec;
        let bucket = charge_bucket(spec.time_window, spec.window_type, req.now);
        let prune = current_frame(spec.time_window, spec.window_type, lag).start;
        keys.push(format!("{prefix}{}", usage.policy.id));
        args.extend([
            exact("limit", spec.limit_micros.get())?,
            micros(usage.frame.start).to_string(),
            micros(usage.frame.end).to_string(),
            micros(bucket).to_string(),
            micros(prune).to_string(),
        ]);
        charged.push((usage.policy.id, bucket));
    }
    Ok((keys, args, charged))
}

/// The policies an `unseeded` reply names (1-based, in evaluation order).
fn unseeded_policies(
    reply: &[Value],
    charged: &Charged,
    zero: &[PolicyUsage],
) -> Vec<BudgetPolicy> {
    reply
        .iter()
        .skip(1)
        .filter_map(Value::as_i64)
        .filter_map(|i| usize::try_from(i - 1).ok())
        .filter_map(|i| charged.get(i))
        .filter_map(|(id, _)| zero.iter().find(|u| u.policy.id == *id))
        .map(|u| u.policy.clone())
        .collect()
}

/// Reservation attempts per call: a policy not seeded in this epoch is seeded, then tried again.
const RESERVE_ATTEMPTS_MAX: usize = 3;

impl RedisSpend {
    /// The check-and-hold, seeding first every policy of the chain the script finds unseeded
    /// in the current epoch (a new or emptied Redis, a new policy).
    async fn reserve_seeded(&self, req: ReserveRequest) -> Result<ReserveOutcome, SpendError> {
        let limits = &self.limits;
        req.check(limits.resource_bytes_max, limits.hold_policies_max)?;
        for _ in 0..RESERVE_ATTEMPTS_MAX {
            let epoch = self.admitting_epoch()?;
            match self.try_reserve(req.clone(), epoch).await? {
                Ok(outcome) => return Ok(outcome),
                Err(unseeded) => self.seed(req.chain.root().id, &unseeded, req.now).await?,
            }
        }
        Err(unavailable(
            "the chain's policies were not seeded in the current epoch after rebuilding them",
        ))
    }

    /// One reserve script in `epoch`: the outcome, or the policies it found unseeded (then
    /// nothing is held).
    async fn try_reserve(
        &self,
        req: ReserveRequest,
        epoch: String,
    ) -> Result<Result<ReserveOutcome, Vec<BudgetPolicy>>, SpendError> {
        let zero = zero_usages(&req);
        let estimate = req.estimate.micros.max(Micros::ZERO);
        let order = decide(&req.chain, &zero, &req.resource, req.estimate);
        // Rules that do not depend on spend are settled before Redis is asked to hold anything.
        let may_hold = order.allowed || order.reason == Some(DenyReason::BudgetExceeded);
        let (policy_keys, policy_args, charged) = policy_args(&req, &zero, &order)?;
        let key = HoldKey {
            root_agent_id: req.chain.root().id,
            hold_id: req.hold_id,
        };
        let mut keys = vec![hold_key(&key)];
        keys.extend(policy_keys);
        let mut args = vec![
            exact("estimate", estimate.get())?,
            if may_hold { "1" } else { "0" }.to_owned(),
            charged.len().to_string(),
            epoch,
        ];
        args.extend(policy_args);
        args.extend(hold_fields(&req, estimate, &charged));
        debug_assert!(args.len() <= 4 + 5 * charged.len() + 2 * HOLD_FIELDS_MAX);
        // The index entry is sent first on the same connection, pipelined with the script: a
        // crash leaves at worst an index entry without a hold (dropped by the sweeper), never a
        // hold that nothing would expire.
        let client = self.pool.next();
        let (indexed, reply) = tokio::join!(
            self.set_index_on(client, &key, micros(req.expires_at)),
            run_on(client, &self.scripts.reserve, keys, args)
        );
        let reply = reply?.into_array();
        if reply.first().and_then(Value::as_string).as_deref() == Some("unseeded") {
            self.set_index(&key, 0).await?;
            return Ok(Err(unseeded_policies(&reply, &charged, &zero)));
        }
        if let Err(e) = indexed {
            if reply.first().and_then(Value::as_string).as_deref() == Some("ok") {
                // Held but not indexed: never leave it so; void it and fail the call.
                if let Err(void) = self.settle(&key, Micros::ZERO, req.now).await {
                    tracing::error!(hold = %key, error = %void, "a hold without an expiry entry could not be voided");
                }
            }
            return Err(e);
        }
        let attempt = Attempt {
            req,
            key,
            amount: estimate,
            charged,
            zero,
            order,
        };
        self.conclude(attempt, reply).await.map(Ok)
    }
}

#[async_trait]
impl SpendCache for RedisSpend {
    async fn reserve(&self, req: ReserveRequest) -> Result<ReserveOutcome, SpendError> {
        self.reserve_seeded(req).await
    }

    async fn settle(
        &self,
        hold: &HoldKey,
        actual: Micros,
        _at: DateTime<Utc>,
    ) -> Result<Settlement, SpendError> {
        if actual.is_negative() {
            return Err(SpendError::Invalid(format!(
                "actual cost {actual} is negative"
            )));
        }
        let args = vec![
            exact("actual cost", actual.get())?,
            policy_prefix(hold.root_agent_id),
            self.limits.tombstone_ms.max(1).to_string(),
        ];
        let keys = vec![hold_key(hold), tombstone_key(hold)];
        // The index entry goes after the script on the same connection (pipelined): a hold is
        // never left without one; an entry left without a hold is dropped by the sweeper.
        let client = self.pool.next();
        let (reply, unindexed) = tokio::join!(
            run_on(client, &self.scripts.settle, keys, args),
            self.set_index_on(client, hold, 0)
        );
        let reply = reply?.into_array();
        let reserved = match reply.first().and_then(Value::as_string).as_deref() {
            Some("ok") => reply.get(1).and_then(Value::as_i64).unwrap_or(0),
            _ => return Err(SpendError::HoldNotFound(hold.hold_id)),
        };
        if let Err(e) = unindexed {
            tracing::debug!(hold = %hold, error = %e, "expiry entry left for the sweeper to drop");
        }
        Ok(Settlement {
            hold_id: hold.hold_id,
            reserved: Micros(reserved),
            posted: actual,
        })
    }

    async fn extend(&self, hold: &HoldKey, expires_at: DateTime<Utc>) -> Result<(), SpendError> {
        self.set_index(hold, micros(expires_at)).await?;
        let args = vec![micros(expires_at).to_string()];
        let found = self
            .run(&self.scripts.extend, vec![hold_key(hold)], args)
            .await?;
        match found.as_i64() {
            Some(1) => Ok(()),
            _ => {
                self.set_index(hold, 0).await?;
                Err(SpendError::HoldNotFound(hold.hold_id))
            }
        }
    }

    fn expiry_shards(&self) -> u32 {
        self.limits.expiry_shards.max(1)
    }

    async fn expired(
        &self,
        shard: u32,
        now: DateTime<Utc>,
        max: usize,
    ) -> Result<Vec<HoldInfo>, SpendError> {
        let mut due = Vec::new();
        for (key, _) in self
            .due(shard, "-inf", &micros(now).to_string(), max)
            .await?
        {
            match self.read_hold(&key).await? {
                None => self.set_index(&key, 0).await?, // settled meanwhile
                Some(hold) if hold.expires_at > now => {
                    self.set_index(&key, micros(hold.expires_at)).await?
                }
                Some(hold) => due.push(hold),
            }
        }
        Ok(due)
    }

    async fn spent(
        &self,
        root: AgentId,
        policies: &[BudgetPolicy],
        now: DateTime<Utc>,
    ) -> Result<Vec<PolicyUsage>, SpendError> {
        let prefix = policy_prefix(root);
        let mut usages = Vec::with_capacity(policies.len());
        for policy in policies {
            let frame = current_frame(policy.spec.time_window, policy.spec.window_type, now);
            let args = vec![
                micros(frame.start).to_string(),
                micros(frame.end).to_string(),
            ];
            let key = format!("{prefix}{}", policy.id);
            let reply = self
                .run(&self.scripts.usage, vec![key], args)
                .await?
                .into_array();
            let at = |i: usize| Micros(reply.get(i).and_then(Value::as_i64).unwrap_or(0));
            let (settled, reserved) = (at(0), at(1));
            usages.push(PolicyUsage {
                policy: policy.clone(),
                frame,
                settled,
                reserved,
            });
        }
        Ok(usages)
    }

    async fn list_holds(&self, max: usize) -> Result<Vec<HoldInfo>, SpendError> {
        let mut entries = Vec::new();
        for shard in 0..self.expiry_shards() {
            entries.extend(self.due(shard, "-inf", "+inf", max).await?);
        }
        entries.sort_by_key(|(key, score)| (*score, key.hold_id));
        let mut holds = Vec::new();
        for (key, _) in entries {
            if holds.len() >= max {
                break;
            }
            if let Some(hold) = self.read_hold(&key).await? {
                holds.push(hold);
            }
        }
        Ok(holds)
    }

    async fn remember_nonce(
        &self,
        nonce: &str,
        expires_at: DateTime<Utc>,
        _now: DateTime<Utc>,
    ) -> Result<bool, SpendError> {
        let key = format!("caracal:nonce:{nonce}");
        let args = vec![expires_at.timestamp_millis().to_string()];
        let fresh = self.run(&self.scripts.nonce, vec![key], args).await?;
        Ok(fresh.as_i64() == Some(1))
    }

    async fn ping(&self) -> Result<(), SpendError> {
        self.pool
            .next()
            .ping::<String>(None)
            .await
            .map_err(unavailable)?;
        // Not ready while a new epoch waits for every replica's holds.
        self.admitting_epoch().map(drop)
    }

    fn epoch_check_every(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(
            self.limits.epoch_check_ms.max(1),
        ))
    }

    async fn check_epoch(&self) -> Result<EpochState, SpendError> {
        self.observe_epoch().await
    }

    async fn reassert(&self, hold: &HoldInfo) -> Result<bool, SpendError> {
        self.reassert_hold(hold).await
    }
}

/// One reservation as sent to Redis.
struct Attempt {
    req: ReserveRequest,
    key: HoldKey,
    amount: Micros,
    /// The buckets the hold charges, in evaluation order.
    charged: Charged,
    /// The active policies at zero usage, and the decision over them (its order, and the rules
    /// that do not depend on spend).
    zero: Vec<PolicyUsage>,
    order: Decision,
}

impl RedisSpend {
    /// Turns the reserve script's reply into the outcome, with the decision over the usages the
    /// script saw (the same arithmetic it applied).
    async fn conclude(
        &self,
        attempt: Attempt,
        reply: Vec<Value>,
    ) -> Result<ReserveOutcome, SpendError> {
        let Attempt {
            req,
            key,
            amount,
            charged,
            zero,
            order,
        } = attempt;
        let status = reply.first().and_then(Value::as_string).unwrap_or_default();
        if status == "dup" {
            return Err(SpendError::DuplicateHold(req.hold_id));
        }
        let mut usages: Vec<PolicyUsage> = Vec::with_capacity(zero.len());
        for (i, (policy, _)) in charged.iter().enumerate() {
            let Some(base) = zero.iter().find(|u| u.policy.id == *policy) else {
                continue;
            };
            let at = |j: usize| Micros(reply.get(j).and_then(Value::as_i64).unwrap_or(0));
            usages.push(PolicyUsage {
                settled: at(1 + 2 * i),
                reserved: at(2 + 2 * i),
                ..base.clone()
            });
        }
        debug_assert_eq!(usages.len(), order.evaluations.len());
        let decision = decide(&req.chain, &usages, &req.resource, req.estimate);
        match (status.as_str(), decision.allowed) {
            ("ok", true) => Ok(ReserveOutcome::Reserved(Reservation {
                hold_id: req.hold_id,
                root_agent_id: key.root_agent_id,
                decision,
                charged,
                amount,
            })),
            ("ok", false) => {
                tracing::warn!(hold = %key, "redis held a call the decision denies; voiding it");
                self.settle(&key, Micros::ZERO, req.now).await?;
                Ok(ReserveOutcome::Denied(decision))
            }
            (_, false) => {
                self.set_index(&key, 0).await?;
                Ok(ReserveOutcome::Denied(decision))
            }
            (_, true) => {
                self.set_index(&key, 0).await?;
                Err(SpendError::Corrupt(
                    "redis found no room where the decision finds some".into(),
                ))
            }
        }
    }
}
