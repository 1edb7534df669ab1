-- sem_fair_release: give back the permit of a token, if it still holds
-- one, and wake only the waiters whose turn it is (no thundering herd).
--
-- With `free` permits free after the release, the first `free` waiters of
-- the queue may take one (see sem_fair_acquire.lua): each of them is told,
-- by a message naming it. Usually that is one waiter, the head; more only
-- when several permits came free before the waiters owed them took them
-- (telling a waiter twice costs it one more attempt, nothing else).
--
-- KEYS[1]  permits sorted set
-- KEYS[2]  the wake channel of N
-- KEYS[3]  limit key (deleted with the last permit: the limit may then change)
-- KEYS[4]  queue (waiter id -> arrival ticket)
-- KEYS[5]  deadlines (waiter id -> server ms)
-- KEYS[6]  the permits' fences (hash): the token's is forgotten
-- ARGV[1]  owner token
-- ARGV[2]  payload when a free permit is owed to nobody queued (the
--          releasing client's id)
-- ARGV[3]  limit K of the caller (used once the limit key is gone)
--
-- Reply: 1  released, and the waiters whose turn it is were told
--           ("w:" .. id each)
--        2  released, and some free permit is owed to nobody queued: the
--           waiters whose turn it is were told, ARGV[2] was published too,
--           and the caller wakes its own local waiters (it skips the echo
--           of its id)
--        0  the token held no live permit: nothing was published
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local stored = tonumber(redis.call('GET', KEYS[3]) or '0')
local held = redis.call('ZCARD', KEYS[1])
if held == 0 then
  -- The last live permit: the fences of expired ones go with the limit.
  redis.call('DEL', KEYS[3], KEYS[6])
end
if tonumber(score) <= now then
  return 0 -- it had expired: it was no longer ours to give back
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)
for _, w in ipairs(dead) do
  redis.call('ZREM', KEYS[4], w)
  redis.call('ZREM', KEYS[5], w)
end
local limit = stored
if limit <= 0 then
  limit = tonumber(ARGV[3])
end
local turn = {}
if limit > held then
  turn = redis.call('ZRANGE', KEYS[4], 0, limit - held - 1)
end
for _, w in ipairs(turn) do
  wake(KEYS[2], 'w:' .. w)
end
if #turn < limit - held then
  wake(KEYS[2], ARGV[2])
  return 2
end
return 1
