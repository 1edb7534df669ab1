-- fair_leave: a fair waiter gives up (its acquire was cancelled or timed
-- out): it leaves the queue at once instead of holding its place until its
-- deadline, and the waiters that may now be first are told.
--
-- KEYS[1]  queue (waiter id -> arrival ticket)
-- KEYS[2]  deadlines (waiter id -> server ms)
-- KEYS[3]  the wake channel of N
-- ARGV[1]  the leaving waiter's id
-- ARGV[2]  how many waiters at the front may be served at once (1 for a
--          lease, K for a semaphore)
--
-- Reply: 1 it was queued (and left), 0 it was not
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if not rank then
  return 0
end
local front = tonumber(ARGV[2])
if rank < front then
  -- It stood where a release would have named it: name whoever stands
  -- there now (a spurious wake costs that waiter one attempt).
  for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, front - 1)) do
    wake(KEYS[3], 'w:' .. id)
  end
end
return 1
