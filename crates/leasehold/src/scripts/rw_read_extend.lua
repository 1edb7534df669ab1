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
local expiry = now + tonumber(ARGV[2])
-- The keys' expiry first, as in sem_extend.lua (out of memory, Redis lets
-- the ZADD through only after a write that cannot use more memory).
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local at = math.max(tonumber(last[2]), expiry)
redis.call('PEXPIREAT', KEYS[1], at)
redis.call('PEXPIREAT', KEYS[2], at)
redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[1])
return 1
