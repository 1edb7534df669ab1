-- rw_write_acquire: take the read-write lock N for writing, once no reader
-- and no other writer holds it. A writer that has to wait leaves its intent,
-- which keeps new readers out until it got in (or its intent expired).
-- (The client sends fence.lua, then this file.)
--
-- KEYS[1]  readers sorted set
-- KEYS[2]  writer string
-- KEYS[3]  intent string
-- KEYS[4]  the fencing counter of N
-- ARGV[1]  owner token
-- ARGV[2]  ttl in milliseconds
-- ARGV[3]  intent ttl in milliseconds (how long a silent waiting writer
--          keeps readers out); 0 for a writer that will not wait (no intent)
--
-- Reply: {1, fence}   writing (or refreshed, for the same token); fence as
--                     in acquire.lua
--        {0, wait_ms} readers or another writer hold it, or another writer
--                     is first in line
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {1, tonumber(redis.call('GET', KEYS[4])) or next_fence(KEYS[4])}
end
-- First in line? Claim (or refresh) the intent; otherwise wait behind it.
local first = redis.call('GET', KEYS[3])
if first and first ~= ARGV[1] then
  return {0, redis.call('PTTL', KEYS[3])}
end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[3])
end
local w = redis.call('PTTL', KEYS[2])
if w ~= -2 then
  return {0, w}
end
if redis.call('ZCARD', KEYS[1]) > 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(oldest[2]) - now}
end
redis.call('DEL', KEYS[3])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {1, next_fence(KEYS[4])}
