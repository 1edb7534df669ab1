-- release: end the lease N if, and only if, the caller's token holds it.
--
-- KEYS[1]  N, the lease
-- KEYS[2]  the wake channel of N (a key only so that Cluster routes it)
-- ARGV[1]  owner token
-- ARGV[2]  payload of the wake message: the releasing client's id, so
--          that the client can skip the echo of its own release
--
-- Reply: 1  released, and waiters were told on the wake channel
--        0  N is not held by this token (expired, or someone else's): untouched
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[2], ARGV[2])
  return 1
end
return 0
