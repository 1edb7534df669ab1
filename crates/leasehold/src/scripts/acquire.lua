-- acquire: take the lease N for an owner token, or say how long it stays held.
--
-- KEYS[1]  N, the lease: a string holding the owner token, with PX = ttl
-- KEYS[2]  the fencing counter of N (an integer that never expires)
-- ARGV[1]  owner token (128 random bits, hex)
-- ARGV[2]  ttl in milliseconds (> 0)
--
-- Reply: {1, fence}    acquired; fence = the counter after INCR.
--                      When N already holds ARGV[1] (a retry of an acquire
--                      whose reply was lost, or re-entry by the owner), the
--                      TTL is refreshed and the current counter is returned.
--        {0, pttl_ms}  held by another token; pttl_ms as PTTL gives it
--                      (-1: the holder set no TTL, a foreign client's doing).
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('INCR', KEYS[2])}
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, tonumber(redis.call('GET', KEYS[2]) or '0')}
end
return {0, redis.call('PTTL', KEYS[1])}
