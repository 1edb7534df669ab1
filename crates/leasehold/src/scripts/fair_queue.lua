-- The queue of a fair lease, shared by fair_acquire.lua (fence.lua, this
-- file, then its body), fair_release.lua and fair_cancel.lua (fence.lua,
-- wake.lua, this file, fair_hand_on.lua, then their body; see
-- scripts/fair.rs).
--
-- A waiter that will wait stands in three keys of the name's slot: the
-- queue (id -> arrival ticket), its deadline (id -> server ms), and its
-- claim (id -> "<ttl ms>:<attempt>:<owner token>", the hash
-- `queue-claims`): what a release needs to give it the lease in the same
-- script, and the number of the attempt that set its deadline. A waiter
-- leaves all three at once. They and the ticket counter share one expiry,
-- no earlier than the deadline of any waiter queued: a join moves it later
-- (with slack) only when it falls short, or when it made one of them anew
-- (fair_acquire.lua). Waiters past their deadline leave (drop_dead) when
-- the head is looked at: by an acquire that finds the lease free, by a
-- release whose head is one of them (hand_on).

-- The server's clock in ms. The first read of a script run is also the
-- floor of its fences (fence.lua, before this file, reads the clock once
-- per run): a hand-over reads TIME once, not twice.
local function now_ms()
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if not clock_floor then
    clock_floor = ms * 1024
  end
  return ms
end

-- Takes the waiter `id` out of the queue.
local function leave_queue(queue, deadlines, tokens, id)
  redis.call('ZREM', queue, id)
  redis.call('ZREM', deadlines, id)
  redis.call('HDEL', tokens, id)
end

-- Waiters past their deadline (dead, or gone) leave the queue.
local function drop_dead(queue, deadlines, tokens, now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', deadlines, '-inf', now)) do
    leave_queue(queue, deadlines, tokens, id)
  end
end
