//! Lua scripts, run with EVALSHA (loaded on first use by [`redis::Script`]).
//!
//! Liveness: an entry `<incarnation>:<len>:<node_id><platform>` (see
//! [`super::encoding`]) is live while `<node key prefix><node_id>` holds
//! `<incarnation>`. The scripts read node keys they are not passed as KEYS,
//! so they need a single Redis (or one hash slot), not Redis Cluster.

use redis::Script;

/// The Lua function `live(v, node_prefix, memo)` shared by the scripts.
macro_rules! live_fn {
    () => {
        r#"
local function live(v, node_prefix, memo)
  local c1 = string.find(v, ':', 1, true)
  if not c1 or c1 == 1 then return false end
  local c2 = string.find(v, ':', c1 + 1, true)
  if not c2 then return false end
  local n = tonumber(string.sub(v, c1 + 1, c2 - 1))
  if not n then return false end
  local node = string.sub(v, c2 + 1, c2 + n)
  local current = memo[node]
  if current == nil then
    current = redis.call('GET', node_prefix .. node)
    memo[node] = current
  end
  return current == string.sub(v, 1, c1 - 1)
end
local function bump_last_seen(key, now_str)
  local now = tonumber(now_str)
  local ls = tonumber(redis.call('GET', key) or '0') or 0
  if now and now > ls then redis.call('SET', key, now_str) end
end
"#
    };
}

/// Session up. KEYS: presence hash, last_seen. ARGV: session, entry,
/// now_ms, node key prefix. Prunes dead entries; returns 1 when no live
/// session was there before (an online transition), else 0.
const PRESENCE_UP: &str = concat!(
    live_fn!(),
    r#"
local memo = {}
local was_online = false
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if live(all[i + 1], ARGV[4], memo) then
    was_online = true
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
bump_last_seen(KEYS[2], ARGV[3])
if was_online then return 0 else return 1 end
"#
);

/// Session down. KEYS: presence hash, last_seen. ARGV: session, now_ms,
/// node key prefix. Returns 0 when the session was not there; else records
/// last_seen, prunes dead entries and returns 1 when no live session is
/// left (an offline transition).
const PRESENCE_DOWN: &str = concat!(
    live_fn!(),
    r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
bump_last_seen(KEYS[2], ARGV[2])
local memo = {}
local online = false
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if live(all[i + 1], ARGV[3], memo) then
    online = true
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
if online then return 0 else return 1 end
"#
);

/// Removes fields whose value is still the given one. KEYS: a hash. ARGV:
/// field, value, field, value, ... Returns how many were removed. Used to
/// prune entries seen dead without racing a rewrite of the same field.
const HDEL_IF_EQUAL: &str = r#"
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return removed
"#;

/// The scripts, hashed once.
pub(crate) struct Scripts {
    pub presence_up: Script,
    pub presence_down: Script,
    pub hdel_if_equal: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            presence_up: Script::new(PRESENCE_UP),
            presence_down: Script::new(PRESENCE_DOWN),
            hdel_if_equal: Script::new(HDEL_IF_EQUAL),
        }
    }
}
