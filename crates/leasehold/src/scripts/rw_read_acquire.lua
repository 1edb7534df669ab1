-- rw_read_acquire: join the readers of the read-write lock N, unless a
-- writer holds it or waits for it (writers are not starved by new readers).
-- (The client sends fence.lua, then this file.)
--
-- KEYS[1]  readers: sorted set, member = token, score = expiry (server ms)
-- KEYS[2]  writer: string holding the writer's token, PX = ttl
-- KEYS[3]  intent: string holding the token of the writer first in line, PX
-- KEYS[4]  the fencing counter of N
-- KEYS[5]  the readers' fences: hash, token -> fence (expires with KEYS[1])
-- ARGV[1]  owner token
-- ARGV[2]  ttl in milliseconds
--
-- Reply: {1, fence}   reading (or refreshed, for the same token: the fence
--                     it was granted); fence as in acquire.lua
--        {0, wait_ms} a writer holds the lock or waits for it; wait_ms is
--                     its PTTL (-1 when unknown)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
forget_gone(KEYS[5], KEYS[1])
local function keep_until_last_expiry()
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[1], tonumber(last[2]))
  redis.call('PEXPIREAT', KEYS[5], tonumber(last[2]))
end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  local fence = held_fence(KEYS[5], KEYS[4], ARGV[1])
  keep_until_last_expiry()
  return {1, fence}
end
local w = redis.call('PTTL', KEYS[2])
if w ~= -2 then
  return {0, w}
end
local i = redis.call('PTTL', KEYS[3])
if i ~= -2 then
  return {0, i}
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
local fence = grant_fence(KEYS[5], KEYS[4], ARGV[1])
keep_until_last_expiry()
return {1, fence}
