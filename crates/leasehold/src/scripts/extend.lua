-- extend: reset the TTL of the lease N if, and only if, the caller's token holds it.
--
-- KEYS[1]  N, the lease
-- ARGV[1]  owner token
-- ARGV[2]  new ttl in milliseconds (> 0)
--
-- Reply: 1  extended
--        0  N is not held by this token: untouched
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
