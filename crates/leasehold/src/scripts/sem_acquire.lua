-- sem_acquire: take one of `limit` permits of the semaphore N.
--
-- Expiry is by the Redis server's clock (TIME), never a client's, so clients
-- with skewed clocks can neither steal permits nor keep them past their ttl.
-- (The client sends fence.lua, then this file.)
--
-- KEYS[1]  permits: sorted set, member = owner token, score = expiry (server ms)
-- KEYS[2]  limit: the K the permits were taken with (expires with the permits)
-- KEYS[3]  the fencing counter of N
-- KEYS[4]  the permits' fences: hash, token -> fence (expires with KEYS[1])
-- ARGV[1]  owner token
-- ARGV[2]  ttl in milliseconds
-- ARGV[3]  limit K (>= 1)
--
-- Reply: {1, fence}     a permit was taken (or refreshed, for the same
--                       token: the fence it was granted); fence as in
--                       acquire.lua
--        {0, wait_ms}   all K permits are held; the earliest expires in wait_ms
--        {-1, K'}       the permits in use were taken with another limit K'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
-- Reclaim expired permits: no sweeper process needed.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
forget_gone(KEYS[4], KEYS[1])
local held = redis.call('ZCARD', KEYS[1])
local stored = tonumber(redis.call('GET', KEYS[2]) or '0')
if held > 0 and stored > 0 and stored ~= limit then
  return {-1, stored}
end
local function keep_until_last_expiry()
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  local at = tonumber(last[2])
  redis.call('PEXPIREAT', KEYS[1], at)
  redis.call('PEXPIREAT', KEYS[4], at)
  redis.call('SET', KEYS[2], limit, 'PXAT', at)
end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  local fence = held_fence(KEYS[4], KEYS[3], ARGV[1])
  keep_until_last_expiry()
  return {1, fence}
end
if held < limit then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  local fence = grant_fence(KEYS[4], KEYS[3], ARGV[1])
  keep_until_last_expiry()
  return {1, fence}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(first[2]) - now}
