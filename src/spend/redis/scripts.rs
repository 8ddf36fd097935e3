//! The Lua scripts of the Redis spend cache: each operation on a tree's budgets is one script
//! over keys that share the tree's hash tag, so it is atomic (and Redis Cluster accepts it).
//! Amounts travel as decimal strings and are added with `HINCRBY` (exact 64-bit integers);
//! Lua only compares sums, which stay exact below 2^53 micro-units (the Rust side refuses
//! anything larger). Owns the script texts only.

/// Check-and-hold over every active policy of a chain.
///
/// KEYS[1] the hold's hash; KEYS[2..] one hash per policy (`s:<bucket>` settled and
/// `r:<bucket>` reserved micro-units, `e` the epoch it was seeded in, `v` its settle count).
/// ARGV[1] the estimate, ARGV[2] `1` when the rules that do not depend on spend (suspension,
/// allow lists, currency) allow the call, ARGV[3] the policy count n, ARGV[4] the epoch, then
/// five values per policy: limit, frame start, frame end, the bucket to charge, the bucket
/// before which settled spend no longer counts anywhere (pruned); then the hold's fields as
/// field/value pairs.
/// Returns `{status, settled_1, reserved_1, ...}` with status `ok` (held), `no` (does not fit;
/// nothing held) or `dup` (a hold with this id exists; nothing changed); or `{'unseeded', i,
/// ...}`, nothing held, when policies i (1-based) were not seeded in this epoch.
pub const RESERVE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return {'dup'} end
local estimate = tonumber(ARGV[1])
local n = tonumber(ARGV[3])
local unseeded = {'unseeded'}
for i = 1, n do
  if redis.call('HGET', KEYS[i + 1], 'e') ~= ARGV[4] then unseeded[#unseeded + 1] = i end
end
if #unseeded > 1 then return unseeded end
local out = {'no'}
local fits = true
for i = 1, n do
  local base = 4 + (i - 1) * 5
  local limit = tonumber(ARGV[base + 1])
  local first, last = tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local prune = tonumber(ARGV[base + 5])
  local flat = redis.call('HGETALL', KEYS[i + 1])
  local settled, reserved, held = 0, 0, {}
  for j = 1, #flat, 2 do
    local kind, bucket = string.sub(flat[j], 1, 1), tonumber(string.sub(flat[j], 3))
    if bucket and kind == 'r' then held[bucket] = true end
    if bucket and bucket >= first and bucket < last then
      if kind == 's' then settled = settled + tonumber(flat[j + 1])
      else reserved = reserved + tonumber(flat[j + 1]) end
    end
  end
  for j = 1, #flat, 2 do
    local kind, bucket = string.sub(flat[j], 1, 1), tonumber(string.sub(flat[j], 3))
    if bucket and kind == 's' and bucket < prune and not held[bucket] then
      redis.call('HDEL', KEYS[i + 1], flat[j])
    end
  end
  out[#out + 1] = settled
  out[#out + 1] = reserved
  if settled + reserved + estimate > limit then fits = false end
end
if fits and ARGV[2] == '1' then
  for i = 1, n do
    redis.call('HINCRBY', KEYS[i + 1], 'r:' .. ARGV[4 + (i - 1) * 5 + 4], ARGV[1])
  end
  local fields = {}
  for j = 5 + 5 * n, #ARGV do fields[#fields + 1] = ARGV[j] end
  redis.call('HSET', KEYS[1], unpack(fields))
  out[1] = 'ok'
end
return out
"#;

/// Posts the actual cost to every bucket a hold charges, voids the rest, removes the hold.
///
/// KEYS[1] the hold's hash, KEYS[2] its tombstone (kept ARGV[3] ms, so a replica re-asserting
/// its holds after a data loss does not bring back one settled meanwhile). ARGV[1] the actual
/// cost, ARGV[2] the prefix of the tree's policy keys. Each policy's settle count `v` moves
/// (a rebuild that read the record before it starts again). Returns `{'ok', reserved}` or
/// `{'notfound'}` (settled, expired or never held: nothing is posted).
pub const SETTLE: &str = r#"
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
local hold = redis.call('HMGET', KEYS[1], 'am', 'ch')
if not hold[1] then return {'notfound'} end
local amount = hold[1]
if hold[2] and hold[2] ~= '' then
  for entry in string.gmatch(hold[2], '[^,]+') do
    local at = string.find(entry, '@', 1, true)
    local policy = ARGV[2] .. string.sub(entry, 1, at - 1)
    local bucket = string.sub(entry, at + 1)
    if amount ~= '0' then
      local left = redis.call('HINCRBY', policy, 'r:' .. bucket, '-' .. amount)
      if left <= 0 then redis.call('HDEL', policy, 'r:' .. bucket) end
    end
    if ARGV[1] ~= '0' then redis.call('HINCRBY', policy, 's:' .. bucket, ARGV[1]) end
    redis.call('HINCRBY', policy, 'v', 1)
  end
end
redis.call('DEL', KEYS[1])
return {'ok', amount}
"#;

/// Moves a live hold's expiry. KEYS[1] the hold's hash, ARGV[1] the new expiry (Unix µs).
/// Returns 1, or 0 when the hold is gone.
pub const EXTEND: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'ex', ARGV[1])
return 1
"#;

/// A hold's fields, flat, or an empty array when it is gone. KEYS[1] the hold's hash.
pub const READ_HOLD: &str = r#"
return redis.call('HGETALL', KEYS[1])
"#;

/// Up to ARGV[3] members of an expiry index with a score in [ARGV[1], ARGV[2]], lowest first,
/// as member/score pairs. KEYS[1] the index.
pub const DUE: &str = r#"
return redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[2], 'WITHSCORES', 'LIMIT', 0, ARGV[3])
"#;

/// Sets a member's score in an expiry index (ARGV[2] = `0` removes it). KEYS[1] the index,
/// ARGV[1] the member, ARGV[2] the score (Unix µs).
pub const INDEX: &str = r#"
if ARGV[2] == '0' then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
"#;

/// Records a nonce until ARGV[1] (Unix ms); 1 when new, 0 when already seen. KEYS[1] its key.
pub const NONCE: &str = r#"
if redis.call('SET', KEYS[1], '1', 'NX', 'PXAT', ARGV[1]) then return 1 end
return 0
"#;

/// Settled and reserved micro-units of one policy in [ARGV[1], ARGV[2]). KEYS[1] its hash.
pub const USAGE: &str = r#"
local flat = redis.call('HGETALL', KEYS[1])
local settled, reserved = 0, 0
local first, last = tonumber(ARGV[1]), tonumber(ARGV[2])
for j = 1, #flat, 2 do
  local kind, bucket = string.sub(flat[j], 1, 1), tonumber(string.sub(flat[j], 3))
  if bucket and bucket >= first and bucket < last then
    if kind == 's' then settled = settled + tonumber(flat[j + 1])
    else reserved = reserved + tonumber(flat[j + 1]) end
  end
end
return {settled, reserved}
"#;

/// The epoch of the data in Redis: read, or started (ARGV[1]) when absent (a new or emptied
/// Redis). KEYS[1] the epoch key. Returns `{epoch, 1 when started here else 0}`.
pub const EPOCH: &str = r#"
local epoch = redis.call('GET', KEYS[1])
if epoch then return {epoch, 0} end
redis.call('SET', KEYS[1], ARGV[1])
return {ARGV[1], 1}
"#;

/// A policy's settle count (`v`, `0` when absent), read before its record is, and the epoch
/// it was seeded in (empty when never). KEYS[1] its hash.
pub const VERSION: &str = r#"
return {redis.call('HGET', KEYS[1], 'v') or '0', redis.call('HGET', KEYS[1], 'e') or ''}
"#;

/// Seeds a policy's settled spend from the record, once per epoch: nothing changes when it is
/// already seeded in epoch ARGV[1] (several replicas rebuilding at once set it once, never add
/// up), nor when its settle count moved from ARGV[2] since the record was read (`moved`: read
/// again). Otherwise its `s:` buckets become the record's (ARGV[3..] bucket/amount pairs: every
/// settle before the count was read published its event first, so the record holds it) and
/// `e` the epoch. Reserved `r:` buckets (re-asserted holds) are left alone. KEYS[1] its hash.
/// Returns `seeded`, `moved` or `done`.
pub const SEED: &str = r#"
if redis.call('HGET', KEYS[1], 'e') == ARGV[1] then return 'seeded' end
if (redis.call('HGET', KEYS[1], 'v') or '0') ~= ARGV[2] then return 'moved' end
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 2) == 's:' then redis.call('HDEL', KEYS[1], field) end
end
for j = 3, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], 's:' .. ARGV[j], ARGV[j + 1]) end
redis.call('HSET', KEYS[1], 'e', ARGV[1])
return 'done'
"#;

/// Records a hold again after a data loss, unless it is there or was settled in the last while
/// (its tombstone). KEYS[1] the hold's hash, KEYS[2] its tombstone; ARGV[1] the prefix of the
/// tree's policy keys, ARGV[2..] the hold's fields. Its amount is reserved again in each bucket
/// it charges. Returns 1 when recreated, else 0.
pub const REASSERT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local fields = {}
for j = 2, #ARGV do fields[#fields + 1] = ARGV[j] end
redis.call('HSET', KEYS[1], unpack(fields))
local hold = redis.call('HMGET', KEYS[1], 'am', 'ch')
if hold[1] ~= '0' and hold[2] and hold[2] ~= '' then
  for entry in string.gmatch(hold[2], '[^,]+') do
    local at = string.find(entry, '@', 1, true)
    local policy = ARGV[1] .. string.sub(entry, 1, at - 1)
    redis.call('HINCRBY', policy, 'r:' .. string.sub(entry, at + 1), hold[1])
  end
end
return 1
"#;
