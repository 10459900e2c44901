"""The Lua scripts: each check-and-write runs atomically inside Redis.

``KEEP_LATEST`` stores a record in a hash field unless the field already holds a later one, and
publishes it when stored, in the same atomic step: two replicas racing see one winner, and the
channel carries records in the order Redis accepted them. For cooldowns and budgets "later"
means a later ``until`` (a ``max``); for breakers a later ``at``, ties broken by origin id.

``SPEND_ADD`` adds a provider instance's spend to the fleet's total of a window and publishes
the new total in the same atomic step, so every total on the channel is one Redis really held.

``TOKEN_BUCKET`` is the API's per-key token bucket on Redis's own clock (``TIME``), so replicas
with skewed clocks still share one bucket exactly.
"""

from __future__ import annotations

__all__ = ["KEEP_LATEST", "SPEND_ADD", "TOKEN_BUCKET"]

#: KEYS[1] hash. ARGV: field, record JSON, channel, min TTL (ms), order field name, order
#: value, origin. Returns nil when stored (and published), else the stored, later record.
KEEP_LATEST = """
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local ok, stored = pcall(cjson.decode, current)
  if ok and type(stored) == 'table' then
    local old = tonumber(stored[ARGV[5]]) or 0
    local new = tonumber(ARGV[6])
    if old > new then
      return current
    end
    if old == new then
      if ARGV[5] ~= 'at' or tostring(stored['origin']) >= ARGV[7] then
        return current
      end
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local ttl = tonumber(ARGV[4])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
redis.call('PUBLISH', ARGV[3], ARGV[2])
return false
"""

#: KEYS[1] bucket hash. ARGV: rate per second, burst, cost, TTL (ms).
#: Returns {allowed (0/1), tokens left (a string: Lua numbers would be truncated)}.
TOKEN_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local held = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(held[1])
local ts = tonumber(held[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate)
  ts = now
end
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
local left = string.format('%.17g', tokens)
redis.call('HSET', KEYS[1], 'tokens', left, 'ts', string.format('%.17g', ts))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {allowed, left}
"""

#: KEYS[1] the window's total. ARGV: US dollars to add, TTL (ms), channel, the message's JSON
#: without its closing brace (the script appends ``,"total":"<new total>"}``).
#: Returns the new total (a string, as INCRBYFLOAT gives it).
SPEND_ADD = """
local total = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ',"total":"' .. total .. '"}')
return total
"""
