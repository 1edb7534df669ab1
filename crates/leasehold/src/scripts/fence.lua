-- Fences, shared by every script that grants a lease, a permit or a lock
-- (each of those is this file followed by its own body; see scripts/mod.rs).

-- The next fence of the counter `key`: INCR, floored at the server's clock
-- in milliseconds x 1024, and stored. So a counter that Redis lost (a
-- restart without persistence, an older snapshot, eviction) starts again
-- above every fence handed out before, as long as the server's clock does
-- not step back and a millisecond has passed since the last grant (Redis
-- runs far fewer than 1024 scripts a millisecond). ms x 1024 stays below
-- 2^53, where Lua's numbers stop being exact integers, until the year
-- 2249; a reply carries the number as an exact integer.
--
-- The clock is read once per script run: a batch of grants shares one
-- floor (each name's own INCR still moves its fence on), and saves a TIME
-- call per grant after the first.
local clock_floor
local function next_fence(key)
  if not clock_floor then
    local t = redis.call('TIME')
    clock_floor = (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) * 1024
  end
  local floor = clock_floor
  local n = redis.call('INCR', key)
  if n < floor then
    n = floor
    -- Formatted by hand: tostring() would print 1.8e+15.
    redis.call('SET', key, string.format('%.0f', n))
  end
  return n
end

-- Holders of a set shared by many (the permits of a semaphore, the readers
-- of a read-write lock) keep the fence each was granted in the hash
-- `fences` (token -> fence), which expires with the set: a retry of an
-- acquire whose reply was lost then answers the fence that holder got,
-- never one granted to another holder since.

-- Grants `token` the next fence of `counter`, and keeps it.
local function grant_fence(fences, counter, token)
  local n = next_fence(counter)
  redis.call('HSET', fences, token, string.format('%.0f', n))
  return n
end

-- The fence `token` was granted (a new one if the hash lost it).
local function held_fence(fences, counter, token)
  return tonumber(redis.call('HGET', fences, token)) or grant_fence(fences, counter, token)
end

-- Forgets the fences of holders no longer in the sorted set `holders`
-- (expired, or released by a script that does not know the hash). Looks
-- only when the hash holds more entries than the set.
local function forget_gone(fences, holders)
  if redis.call('HLEN', fences) <= redis.call('ZCARD', holders) then
    return
  end
  for _, token in ipairs(redis.call('HKEYS', fences)) do
    if not redis.call('ZSCORE', holders, token) then
      redis.call('HDEL', fences, token)
    end
  end
end
