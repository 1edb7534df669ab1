-- rw_read_release: leave the readers of N, if this token is one.
--
-- KEYS[1]  readers sorted set
-- KEYS[2]  the wake channel of N
-- KEYS[3]  the readers' fences (hash): the token's is forgotten
-- ARGV[1]  owner token
-- ARGV[2]  payload of the wake message (the releasing client's id)
--
-- Reply: 1 released (waiters told); 0 the token held no live read lock
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if tonumber(score) <= now then
  return 0
end
wake(KEYS[2], ARGV[2])
return 1
