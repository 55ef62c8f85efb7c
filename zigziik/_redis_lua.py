"""The budget's rules in Lua: one script, run once per store operation (`zigziik._redis_store`).

It mirrors `zigziik.ratelimit` (`_prepared`, `BudgetLedger.rolled/capped/reserve/observe`,
`shared_settle/reserve/view`, composed by `shared_exchange`) line for line; a property test
runs both on the same random operations and asserts they agree at every step.

One hash per scope: ``v`` (format version), ``limit``, ``reset_at`` (ms since the epoch),
``used``, ``cap`` (empty: none) and one field ``l:<lease>`` per call in flight, holding when
its lease expires (ms). The time is the Redis server's (``TIME``) unless ``ARGV[1]`` gives one
(the store's ``clock="client"``, for tests). Every figure is an integer below 2^53, exact in
Lua's doubles.

ARGV: 1 now (ms or ""), 2 limit of a new ledger, 3 cap (or ""), 4 the next local midnights
(ms, comma-separated, ascending), 5 the operation (``r`` reserve, ``v`` view), 6 the new
lease's id and 7 its length in ms (reserve only), 8 the settlements to apply first, oldest
first: ``lease,limit,remaining,reset_ms,age_ms`` joined by ``;`` (a figure the server did not
send is empty; ``age_ms``: how long ago the answer arrived). A view without settlements
writes nothing. Reply: {granted, limit, reset_at, used, in_flight, cap or -1, now}.
"""

from __future__ import annotations

import hashlib

from .ratelimit import FRESH_MS

__all__ = ["EXCHANGE", "EXCHANGE_SHA"]

_PRELUDE = r"""
local key = KEYS[1]
local MAX = 9007199254740992
local function fail(why) error('ZIGZIIK ' .. why, 0) end  -- a string: Redis 6 and 7 alike
local function int(text, what)
  if type(text) ~= 'string' or not string.match(text, '^%d+$') then
    fail('garbage: ' .. what .. ' is not a count')
  end
  local n = tonumber(text)
  if n == nil or n >= MAX then fail('garbage: ' .. what .. ' out of range') end
  return n
end
local function fmt(n) return string.format('%.0f', n) end

local now
if ARGV[1] ~= '' then
  now = int(ARGV[1], 'now')
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local new_limit = int(ARGV[2], 'limit')
local cap = nil
if ARGV[3] ~= '' then cap = int(ARGV[3], 'cap') end
local midnights = {}
for m in string.gmatch(ARGV[4], '[^,]+') do midnights[#midnights + 1] = int(m, 'midnight') end
local function next_reset()
  for i = 1, #midnights do
    if midnights[i] > now then return midnights[i] end
  end
  fail("clock: the Redis server's clock is days ahead of the client's")
end

local limit, reset_at, used, lcap
local leases, in_flight, expired = {}, 0, {}
local raw = redis.call('HGETALL', key)
local fresh = #raw == 0
if not fresh then
  local f = {}
  for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
  if f['v'] ~= '1' then fail('garbage: not a zigziik budget (no v=1)') end
  limit = int(f['limit'], 'limit')
  reset_at = int(f['reset_at'], 'reset_at')
  used = int(f['used'], 'used')
  if f['cap'] == nil then fail('garbage: no cap field') end
  if f['cap'] ~= '' then lcap = int(f['cap'], 'cap') end
  for name, value in pairs(f) do
    if string.sub(name, 1, 2) == 'l:' then
      local ends = int(value, 'lease')
      if ends > now then
        leases[string.sub(name, 3)] = ends
        in_flight = in_flight + 1
      else
        expired[#expired + 1] = name
      end
    end
  end
else
  limit, reset_at, used, lcap = new_limit, next_reset(), 0, cap
end
local stored_reset, o_limit, o_used, o_cap = reset_at, limit, used, lcap
-- rolled
if now >= reset_at then
  used = 0
  reset_at = next_reset()
end
-- capped
if cap ~= nil and (lcap == nil or lcap > cap) then
  if cap < limit then limit = cap end
  lcap = cap
end

-- Writes only what changed (every field when the key is new or its day changed).
local function save(added, removed)
  local fields = {}
  local whole = fresh or reset_at ~= stored_reset
  if whole or limit ~= o_limit or lcap ~= o_cap or used ~= o_used then
    fields = {'v', '1', 'limit', fmt(limit), 'reset_at', fmt(reset_at), 'used', fmt(used),
              'cap', lcap ~= nil and fmt(lcap) or ''}
  end
  if added ~= nil then
    fields[#fields + 1] = 'l:' .. added
    fields[#fields + 1] = fmt(leases[added])
  end
  if #fields > 0 then redis.call('HSET', key, unpack(fields)) end
  for i = 1, #removed do expired[#expired + 1] = removed[i] end
  if #expired > 0 then redis.call('HDEL', key, unpack(expired)) end
  if whole then  -- a lease never outlives its day by a day: the reset decides
    local keep = reset_at
    for _, ends in pairs(leases) do
      if ends > keep then keep = ends end
    end
    -- Relative to the script's now: a day after the reset (or the last lease), whatever clock.
    redis.call('PEXPIRE', key, fmt(keep - now + 86400000))
  end
end
local function reply(granted)
  return {granted, limit, reset_at, used, in_flight, lcap ~= nil and lcap or -1, now}
end
"""

EXCHANGE = (
    _PRELUDE
    + r"""
-- rolled, again: a settlement's Reset may have ended the day it describes
local function roll()
  if now >= reset_at then
    used = 0
    reset_at = next_reset()
  end
end
-- BudgetLedger.observe, with the answer's Reset made nearer by its age
local function observe(a, b, c, age)
  local s_limit, s_remaining, s_reset = nil, nil, nil
  if a ~= '' then s_limit = int(a, 'server limit') end
  if b ~= '' then s_remaining = int(b, 'server remaining') end
  if c ~= '' then s_reset = math.max(0, int(c, 'server reset') - age) end
  local b_used, b_reset = used, reset_at
  if s_limit ~= nil then
    if lcap == nil then limit = s_limit else limit = math.min(lcap, s_limit) end
  end
  if s_reset ~= nil then
    reset_at = now + s_reset
    if reset_at > b_reset + 60000 then
      used = math.min(b_used, in_flight + 1)  -- this answer: in its window
      if s_remaining ~= nil then
        local server_limit = s_limit ~= nil and s_limit or limit
        local counted = math.max(0, server_limit - s_remaining) + in_flight
        used = math.min(b_used, counted)
      end
    end
  end
  if s_remaining ~= nil then
    local server_remaining = s_remaining - in_flight
    used = math.max(used, limit - server_remaining)
  end
end

local removed = {}
local settled = false
for entry in string.gmatch(ARGV[8], '[^;]+') do
  local s_lease, a, b, c, d = string.match(entry, '^([^,]*),([^,]*),([^,]*),([^,]*),([^,]*)$')
  if s_lease == nil then fail('garbage: a settlement is not lease,limit,remaining,reset,age') end
  settled = true
  roll()
  if s_lease ~= '' and leases[s_lease] ~= nil then
    leases[s_lease] = nil
    in_flight = in_flight - 1
    removed[#removed + 1] = 'l:' .. s_lease
  end
  local age = int(d, 'age')
  if (a ~= '' or b ~= '' or c ~= '') and age <= FRESH_MS then observe(a, b, c, age) end
end
roll()
if ARGV[5] == 'r' then
  local lease = ARGV[6]
  local lease_ms = int(ARGV[7], 'lease ms')
  if used < limit then
    used = used + 1
    in_flight = in_flight + 1
    leases[lease] = now + lease_ms
    save(lease, removed)
    return reply(1)
  end
  save(nil, removed)
  return reply(0)
end
if settled then save(nil, removed) end
return reply(1)
""".replace("FRESH_MS", str(FRESH_MS))
)

EXCHANGE_SHA = hashlib.sha1(EXCHANGE.encode()).hexdigest()
"""What ``EVALSHA`` names it by."""
