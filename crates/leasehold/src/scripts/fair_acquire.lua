-- fair_acquire: take the lease N in arrival order (fair mode).
--
-- Waiters stand in a queue in Redis; the lease goes to the head of the
-- queue only, so a newcomer cannot barge past waiters of other processes.
-- A waiter that died or gave up leaves the queue when its deadline passes.
-- (The client sends fence.lua, then this file.)
--
-- KEYS[1]  N, the lease (string = owner token, PX = ttl), as in acquire.lua
-- KEYS[2]  the fencing counter of N
-- KEYS[3]  queue: sorted set, member = waiter id, score = arrival ticket
-- KEYS[4]  deadlines: sorted set, member = waiter id, score = when it stops
--          waiting (server ms)
-- KEYS[5]  ticket counter (expires with the queue)
-- ARGV[1]  owner token
-- ARGV[2]  ttl in milliseconds
-- ARGV[3]  waiter id (random, not a secret)
-- ARGV[4]  how long the waiter keeps its place, in ms (0: it will not
--          wait). A live waiter refreshes it at each attempt; a dead one
--          leaves the queue when it runs out.
--
-- Reply: {1, fence}    acquired (the waiter left the queue); fence as in
--                      acquire.lua
--        {0, wait_ms}  not its turn or held; wait_ms is the holder's PTTL,
--                      or, when the lease is free but another waiter is
--                      first, how long until that waiter's deadline
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- Waiters past their deadline (dead, or gone) leave the queue.
local dead = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[4], id)
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(redis.call('GET', KEYS[2])) or next_fence(KEYS[2])}
end
local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
local free = redis.call('EXISTS', KEYS[1]) == 0
if free and (head == nil or head == ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('ZREM', KEYS[4], ARGV[3])
  return {1, next_fence(KEYS[2])}
end
local patience = tonumber(ARGV[4])
if patience > 0 then
  if not redis.call('ZSCORE', KEYS[3], ARGV[3]) then
    redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[5]), ARGV[3])
  end
  redis.call('ZADD', KEYS[4], now + patience, ARGV[3])
  -- The queue's keys live as long as its most patient waiter.
  local last = tonumber(redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')[2])
  redis.call('PEXPIREAT', KEYS[3], last)
  redis.call('PEXPIREAT', KEYS[4], last)
  redis.call('PEXPIREAT', KEYS[5], last)
  head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
end
if free then
  local until_gone = redis.call('ZSCORE', KEYS[4], head)
  return {0, math.max(0, tonumber(until_gone or now) - now)}
end
return {0, redis.call('PTTL', KEYS[1])}
