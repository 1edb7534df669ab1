-- fair_acquire: take the lease N in arrival order (fair mode).
--
-- Waiters stand in a queue in Redis; the lease goes to the head of the
-- queue only, so a newcomer cannot barge past waiters of other processes.
-- A waiter that will wait leaves its claim (its owner token and ttl) with
-- its place, so that a release gives it the lease in the release script
-- itself (fair_release.lua); this script is then its fallback only (a lost
-- message), or how it takes a free lease. A waiter that died or gave up
-- leaves the queue when its deadline passes.
-- (The client sends fence.lua, fair_queue.lua, then this file.)
--
-- KEYS[1]  N, the lease (string = owner token, PX = ttl), as in acquire.lua
-- KEYS[2]  the fencing counter of N
-- KEYS[3]  queue: sorted set, member = waiter id, score = arrival ticket
-- KEYS[4]  deadlines: sorted set, member = waiter id, score = when it stops
--          waiting (server ms)
-- KEYS[5]  ticket counter (expires with the queue)
-- KEYS[6]  claims: hash, waiter id -> "<ttl ms>:<attempt>:<owner token>"
--          (expires with the queue)
-- ARGV[1]  owner token
-- ARGV[2]  ttl in milliseconds
-- ARGV[3]  waiter id (random, not a secret)
-- ARGV[4]  how long the waiter keeps its place, in ms (0: it will not
--          wait). A live waiter refreshes it at each attempt; a dead one
--          leaves the queue when it runs out.
-- ARGV[5]  this attempt's number among the waiter's attempts: a grant
--          names the attempt that set the deadline it was cut to, so that
--          the waiter counts the grant from that attempt's send
--
-- Reply: {1, fence}    acquired (the waiter left the queue); fence as in
--                      acquire.lua. When N already holds the token (a
--                      release granted it to this waiter, whose message
--                      was lost or raced this attempt), the TTL is reset
--                      to ARGV[2] and the fence of that grant is returned.
--        {0, wait_ms}  not its turn or held; wait_ms is the holder's PTTL,
--                      or, when the lease is free but another waiter is
--                      first, how long until that waiter's deadline
local now = now_ms()
drop_dead(KEYS[3], KEYS[4], KEYS[6], now)
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  leave_queue(KEYS[3], KEYS[4], KEYS[6], ARGV[3])
  return {1, tonumber(redis.call('GET', KEYS[2])) or next_fence(KEYS[2])}
end
local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
local free = redis.call('EXISTS', KEYS[1]) == 0
if free and (head == nil or head == ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  leave_queue(KEYS[3], KEYS[4], KEYS[6], ARGV[3])
  return {1, next_fence(KEYS[2])}
end
local patience = tonumber(ARGV[4])
if patience > 0 then
  if not redis.call('ZSCORE', KEYS[3], ARGV[3]) then
    redis.call('ZADD', KEYS[3], redis.call('INCR', KEYS[5]), ARGV[3])
  end
  redis.call('ZADD', KEYS[4], now + patience, ARGV[3])
  redis.call('HSET', KEYS[6], ARGV[3], ARGV[2] .. ':' .. ARGV[5] .. ':' .. ARGV[1])
  -- The queue's keys live as long as its most patient waiter.
  local last = tonumber(redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')[2])
  redis.call('PEXPIREAT', KEYS[3], last)
  redis.call('PEXPIREAT', KEYS[4], last)
  redis.call('PEXPIREAT', KEYS[5], last)
  redis.call('PEXPIREAT', KEYS[6], last)
  head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
end
if free then
  local until_gone = redis.call('ZSCORE', KEYS[4], head)
  return {0, math.max(0, tonumber(until_gone or now) - now)}
end
return {0, redis.call('PTTL', KEYS[1])}
