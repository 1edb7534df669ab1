-- The two operations of a plain lease, shared by acquire.lua, release.lua
-- and batch.lua (each of those is fence.lua, this file, then its own body).

-- Takes the lease n for token, or says how long it stays held; see
-- acquire.lua for the reply.
local function acquire(n, fence, token, ttl)
  if redis.call('SET', n, token, 'NX', 'PX', ttl) then
    return 1, next_fence(fence)
  end
  if redis.call('GET', n) == token then
    redis.call('PEXPIRE', n, ttl)
    -- Nobody else was granted it since: the counter is still its fence.
    return 1, tonumber(redis.call('GET', fence)) or next_fence(fence)
  end
  return 0, redis.call('PTTL', n)
end

-- Ends the lease n if, and only if, token holds it, and then publishes
-- payload on the wake channel; see release.lua for the reply.
local function release(n, channel, token, payload)
  if redis.call('GET', n) == token then
    redis.call('DEL', n)
    wake(channel, payload)
    return 1
  end
  return 0
end
