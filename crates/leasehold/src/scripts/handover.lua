-- handover: end the caller's lease N and give it, in the same step, to the
-- next waiter of the releasing client, which is woken without a round trip
-- -- unless waiters of other clients are subscribed to N's wake channel:
-- then the lease is freed and every client is told, so that no process
-- keeps a lease among its own tasks while others starve.
-- (The client sends fence.lua, then this file.)
--
-- Out of memory (maxmemory with noeviction), Redis refuses a script's
-- first write command if it may use more memory, and lets every write
-- after the first through. So the lease is deleted first, which is always
-- allowed: the SET after it goes through, and if a Redis should refuse it
-- all the same, the lease is left free and every client told, as a plain
-- release would (never held for its full TTL by a release that failed).
--
-- KEYS[1]  N, the lease
-- KEYS[2]  the fencing counter of N
-- KEYS[3]  the wake channel of N
-- ARGV[1]  the releasing owner's token
-- ARGV[2]  the next owner's token
-- ARGV[3]  the next owner's ttl in milliseconds (> 0)
-- ARGV[4]  how many of KEYS[3]'s subscribers are not other clients'
--          waiters: 1 when the releasing client is itself subscribed (else
--          0), or a large number while the others are known idle (their
--          subscriptions linger after their last wait)
-- ARGV[5]  the payload of a freeing release: "*" and the releasing
--          client's id. Every client wakes its waiters on it, except the
--          releasing client itself, which steps back for a moment
--
-- Reply: fence  handed over; fence = the counter after next_fence (>= 1).
--               Nothing is published: the lease was never free.
--        -1     released and published (other clients wait too, or Redis
--               refused to give the lease to the next owner)
--        0      N is not held by ARGV[1] (expired, or someone else's):
--               untouched, nothing handed over
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
local subscribers = listeners(KEYS[3])
if subscribers <= tonumber(ARGV[4]) then
  local set = redis.pcall('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  if not (type(set) == 'table' and set.err) then
    return next_fence(KEYS[2])
  end
end
wake(KEYS[3], ARGV[5])
return -1
