-- sem_release: give back the permit of a token, if it still holds one.
--
-- KEYS[1]  permits sorted set
-- KEYS[2]  the wake channel of N
-- KEYS[3]  limit key (deleted with the last live permit: the limit may then change)
-- KEYS[4]  the permits' fences (hash): the token's is forgotten
-- ARGV[1]  owner token
-- ARGV[2]  payload of the wake message (the releasing client's id)
--
-- Reply: 1  released, and one waiter was told
--        0  the token held no live permit: nothing changed
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
-- With the last live permit gone, nothing of the semaphore is left: the
-- permits past their expiry, their fences, the limit (which may then
-- change). One look for a live one on every release (ZRANGEBYSCORE, of
-- the commands the least-privilege ACL rule allows).
if #redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'LIMIT', 0, 1) == 0 then
  redis.call('DEL', KEYS[1], KEYS[3], KEYS[4])
end
if tonumber(score) <= now then
  return 0 -- it had expired: it was no longer ours to give back
end
wake(KEYS[2], ARGV[2])
return 1
