-- sem_acquire: take one of `limit` permits of the semaphore N.
--
-- Expiry is by the Redis server's clock (TIME), never a client's, so clients
-- with skewed clocks can neither steal permits nor keep them past their ttl.
--
-- KEYS[1]  permits: sorted set, member = owner token, score = expiry (server ms)
-- KEYS[2]  limit: the K the permits were taken with (expires with the permits)
-- KEYS[3]  the fencing counter of N
-- ARGV[1]  owner token
-- ARGV[2]  ttl in milliseconds
-- ARGV[3]  limit K (>= 1)
--
-- Reply: {1, fence}     a permit was taken (or refreshed, for the same token)
--        {0, wait_ms}   all K permits are held; the earliest expires in wait_ms
--        {-1, K'}       the permits in use were taken with another limit K'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
-- Reclaim expired permits: no sweeper process needed.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
local stored = tonumber(redis.call('GET', KEYS[2]) or '0')
if held > 0 and stored > 0 and stored ~= limit then
  return {-1, stored}
end
local function keep_until_last_expiry()
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  local at = tonumber(last[2])
  redis.call('PEXPIREAT', KEYS[1], at)
  redis.call('SET', KEYS[2], limit, 'PXAT', at)
end
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  keep_until_last_expiry()
  return {1, tonumber(redis.call('GET', KEYS[3]) or '0')}
end
if held < limit then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  keep_until_last_expiry()
  return {1, redis.call('INCR', KEYS[3])}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(first[2]) - now}
