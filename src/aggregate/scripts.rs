//! The Lua scripts of the metrics role. Each touches the keys of one hash slot only: a consumed
//! partition's lease, dedupe marks and aggregates share the tag `{m<partition>}`; the members
//! set has its own. Integers travel as strings and are added by `HINCRBY` (exact int64), never
//! by Lua arithmetic on doubles.

/// Renews a replica's membership. KEYS[1] the members sorted set, KEYS[2] the topics hash.
/// ARGV: owner, now (µs), expires (µs), topic, partitions. Returns the live member count.
pub const MEMBER: &str = r#"
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2])
redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
return redis.call('ZCARD', KEYS[1])
"#;

/// Removes a replica from the members and returns the topics hash (topic → partitions).
/// KEYS[1] the members set, KEYS[2] the topics hash; ARGV[1] owner.
pub const LEAVE: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('HGETALL', KEYS[2])
"#;

/// Reads a lease hash: owner, epoch, expires, offset (nil fields when absent). KEYS[1] lease.
pub const READ_LEASE: &str = r#"
return redis.call('HMGET', KEYS[1], 'owner', 'epoch', 'expires', 'offset')
"#;

/// Keeps a lease this owner holds. KEYS[1] lease; ARGV owner, epoch, expires.
/// Returns the committed offset, or -1 when the lease is no longer this owner's at this epoch.
pub const RENEW: &str = r#"
local l = redis.call('HMGET', KEYS[1], 'owner', 'epoch', 'offset')
if l[1] ~= ARGV[1] or l[2] ~= ARGV[2] then return -1 end
redis.call('HSET', KEYS[1], 'expires', ARGV[3])
return tonumber(l[3] or '0')
"#;

/// Gives up a lease if this owner holds it (the epoch and offset stay). KEYS[1] lease; ARGV owner.
pub const RELEASE: &str = r#"
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'owner')
  redis.call('HSET', KEYS[1], 'expires', '0')
end
return 0
"#;

/// Takes a free or expired lease with a new epoch, if nothing changed since it was read.
/// KEYS[1] lease; ARGV owner, observed epoch ('0' when there was no lease), new epoch, now (µs),
/// expires (µs). Returns the committed offset, or -1 when another replica got there first.
pub const TAKE: &str = r#"
local l = redis.call('HMGET', KEYS[1], 'owner', 'epoch', 'expires', 'offset')
if (l[2] or '0') ~= ARGV[2] then return -1 end
if l[1] and tonumber(l[3] or '0') >= tonumber(ARGV[4]) then return -1 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'epoch', ARGV[3], 'expires', ARGV[5])
if not l[4] then redis.call('HSET', KEYS[1], 'offset', '0') end
return tonumber(l[4] or '0')
"#;

/// One batch of one partition: refused unless the lease still names this owner and epoch;
/// otherwise every event not seen before (its dedupe mark set now) adds its increments, the
/// touched aggregates get their retention, and the offset moves. All or nothing.
/// KEYS: [lease, mark per event..., aggregate keys...].
/// ARGV: owner, epoch, next offset, dedupe ttl (s), event count, key count,
///   one ttl per aggregate key (0: kept forever), then per event: its increment count and
///   that many (key index from 0, field, delta).
/// Returns the number of events applied, or -1 when fenced.
pub const COMMIT: &str = r#"
local l = redis.call('HMGET', KEYS[1], 'owner', 'epoch')
if l[1] ~= ARGV[1] or l[2] ~= ARGV[2] then return -1 end
local events = tonumber(ARGV[5])
local nkeys = tonumber(ARGV[6])
local first = 2 + events
local touched = {}
local a = 7 + nkeys
local applied = 0
for e = 1, events do
  local count = tonumber(ARGV[a])
  a = a + 1
  if redis.call('SET', KEYS[1 + e], '1', 'NX', 'EX', ARGV[4]) then
    applied = applied + 1
    for i = 0, count - 1 do
      local k = tonumber(ARGV[a + 3 * i])
      redis.call('HINCRBY', KEYS[first + k], ARGV[a + 3 * i + 1], ARGV[a + 3 * i + 2])
      touched[k] = true
    end
  end
  a = a + 3 * count
end
for k, _ in pairs(touched) do
  local ttl = ARGV[7 + k]
  if ttl ~= '0' then redis.call('EXPIRE', KEYS[first + k], ttl) end
end
redis.call('HSET', KEYS[1], 'offset', ARGV[3])
return applied
"#;

/// Every field of each key (one slot): a flat array per key.
pub const READ: &str = r#"
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGETALL', key) end
return out
"#;
