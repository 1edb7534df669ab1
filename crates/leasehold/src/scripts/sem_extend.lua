-- sem_extend: reset the expiry of a token's permit, if it is still live.
--
-- KEYS[1]  permits sorted set
-- KEYS[2]  limit key
-- KEYS[3]  the permits' fences (hash); limit and fences expire with the permits
-- ARGV[1]  owner token
-- ARGV[2]  ttl in milliseconds
--
-- Reply: 1 extended; 0 the token holds no live permit (expired permits are
--        not revived: someone may have taken their place)
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then
  return 0
end
local expiry = now + tonumber(ARGV[2])
-- The keys' expiry first: out of memory, Redis refuses a script's first
-- write that may use more memory (the ZADD), but not one after a write
-- that cannot (PEXPIREAT). They live until the last permit's expiry.
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local at = math.max(tonumber(last[2]), expiry)
redis.call('PEXPIREAT', KEYS[1], at)
redis.call('PEXPIREAT', KEYS[2], at)
redis.call('PEXPIREAT', KEYS[3], at)
redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[1])
return 1
