-- sem_fair_acquire: take one of `limit` permits of the semaphore N, in
-- arrival order (fair mode).
--
-- Waiters stand in a queue in Redis, as for a fair lease. While `free`
-- permits are free, only the first `free` waiters of the queue may take
-- one; a caller that is not queued counts as standing at its end. So a
-- newcomer never takes a permit owed to a waiter of another process, yet
-- takes a spare one at once. A waiter that died or gave up leaves the
-- queue when its deadline passes. Expiry is by the server's clock (TIME).
-- (The client sends fence.lua, then this file.)
--
-- KEYS[1]  permits: sorted set, member = owner token, score = expiry (server ms)
-- KEYS[2]  limit: the K the permits were taken with (expires with the permits)
-- KEYS[3]  the fencing counter of N
-- KEYS[4]  queue: sorted set, member = waiter id, score = arrival ticket
-- KEYS[5]  deadlines: sorted set, member = waiter id, score = when it stops
--          waiting (server ms)
-- KEYS[6]  ticket counter (expires with the queue)
-- KEYS[7]  the permits' fences: hash, token -> fence (expires with KEYS[1])
-- ARGV[1]  owner token
-- ARGV[2]  ttl in milliseconds
-- ARGV[3]  limit K (>= 1)
-- ARGV[4]  waiter id (random, not a secret; empty when the caller will not wait)
-- ARGV[5]  how long the waiter keeps its place, in ms (0: it will not
--          wait). A live waiter refreshes it at each attempt; a dead one
--          leaves the queue when it runs out.
--
-- Reply: {1, fence}     a permit was taken (or refreshed, for the same
--                       token: the fence it was granted); the waiter left
--                       the queue; fence as in acquire.lua
--        {0, wait_ms}   not its turn: all K permits are held and the
--                       earliest expires in wait_ms, or the free ones are
--                       owed to waiters ahead and the first of the queue's
--                       deadlines passes in wait_ms
--        {-1, K'}       the permits in use were taken with another limit K'
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local id = ARGV[4]
local patience = tonumber(ARGV[5])
-- Reclaim expired permits, and drop waiters past their deadline (dead, or gone).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
forget_gone(KEYS[7], KEYS[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)
for _, w in ipairs(dead) do
  redis.call('ZREM', KEYS[4], w)
  redis.call('ZREM', KEYS[5], w)
end
local held = redis.call('ZCARD', KEYS[1])
local stored = tonumber(redis.call('GET', KEYS[2]) or '0')
if held > 0 and stored > 0 and stored ~= limit then
  return {-1, stored}
end
-- Takes (or refreshes) the permit of ARGV[1], whose fence comes from
-- `fence_of` (grant_fence or held_fence).
local function take(fence_of)
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
  local fence = fence_of(KEYS[7], KEYS[3], ARGV[1])
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  local at = tonumber(last[2])
  redis.call('PEXPIREAT', KEYS[1], at)
  redis.call('PEXPIREAT', KEYS[7], at)
  redis.call('SET', KEYS[2], limit, 'PXAT', at)
  if id ~= '' then
    redis.call('ZREM', KEYS[4], id)
    redis.call('ZREM', KEYS[5], id)
  end
  return {1, fence}
end
-- The same token again (a retry after a lost reply): refresh, same fence.
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return take(held_fence)
end
local free = limit - held
if free > 0 then
  local place = false
  if id ~= '' then
    place = redis.call('ZRANK', KEYS[4], id)
  end
  if not place then
    place = redis.call('ZCARD', KEYS[4])
  end
  if place < free then
    return take(grant_fence)
  end
end
if patience > 0 and id ~= '' then
  if not redis.call('ZSCORE', KEYS[4], id) then
    redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[6]), id)
  end
  redis.call('ZADD', KEYS[5], now + patience, id)
  -- The queue's keys live as long as its most patient waiter.
  local last = tonumber(redis.call('ZRANGE', KEYS[5], -1, -1, 'WITHSCORES')[2])
  redis.call('PEXPIREAT', KEYS[4], last)
  redis.call('PEXPIREAT', KEYS[5], last)
  redis.call('PEXPIREAT', KEYS[6], last)
end
if free > 0 then
  -- Free permits owed to waiters ahead: the queue changes at the latest
  -- when the first deadline passes (a dead waiter leaves).
  local first = redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')
  return {0, math.max(0, tonumber(first[2] or now) - now)}
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(first[2]) - now}
