-- handover: end the caller's lease N and give it, in the same step, to the
-- next waiter of the releasing client, which is woken without a round trip.
--
-- KEYS[1]  N, the lease
-- KEYS[2]  the fencing counter of N
-- ARGV[1]  the releasing owner's token
-- ARGV[2]  the next owner's token
-- ARGV[3]  the next owner's ttl in milliseconds (> 0)
--
-- Reply: fence  handed over; fence = the counter after INCR (>= 1). Nothing
--               is published: the lease is never free, so no other waiter
--               could take it.
--        0      N is not held by ARGV[1] (expired, or someone else's):
--               untouched, nothing handed over
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return redis.call('INCR', KEYS[2])
end
return 0
