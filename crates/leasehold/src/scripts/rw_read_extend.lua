-- rw_read_extend: reset the expiry of a live read lock.
--
-- KEYS[1]  readers sorted set
-- KEYS[2]  the readers' fences (hash), which expires with the readers
-- ARGV[1]  owner token
-- ARGV[2]  ttl in milliseconds
--
-- Reply: 1 extended; 0 the token holds no live read lock
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], tonumber(last[2]))
redis.call('PEXPIREAT', KEYS[2], tonumber(last[2]))
return 1
