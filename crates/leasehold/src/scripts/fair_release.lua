-- fair_release: end the lease N if the token holds it, and wake only the
-- waiter whose turn it is (no thundering herd).
--
-- KEYS[1]  N, the lease
-- KEYS[2]  the wake channel of N
-- KEYS[3]  queue (waiter id -> arrival ticket)
-- KEYS[4]  deadlines (waiter id -> server ms)
-- ARGV[1]  owner token
-- ARGV[2]  payload when nobody is queued (the releasing client's id)
--
-- Reply: 1  released, the head waiter told ("w:" .. its id)
--        2  released, nobody queued: ARGV[2] was published, and the caller
--           wakes its own local waiters (it skips the echo of its id)
--        0  not held: nothing was published
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now)
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[4], id)
end
local head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
if head then
  wake(KEYS[2], 'w:' .. head)
  return 1
end
wake(KEYS[2], ARGV[2])
return 2
