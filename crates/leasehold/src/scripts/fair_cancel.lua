-- fair_cancel: a fair lease's waiter gives up (its acquire was cancelled
-- or timed out). It leaves the queue at once instead of holding its place
-- until its deadline; and if a release gave it the lease meanwhile (N
-- holds its token: the grant was under way when it gave up, or its
-- message was lost), the lease is released and handed on to the next
-- head in this same script, as fair_release does. A waiter that stood
-- first while the lease is free hands it on too.
-- (The client sends fence.lua, wake.lua, fair_queue.lua, fair_hand_on.lua,
-- then this file.)
--
-- KEYS[1]  N, the lease
-- KEYS[2]  the fencing counter of N
-- KEYS[3]  the wake channel of N
-- KEYS[4]  queue (waiter id -> arrival ticket)
-- KEYS[5]  deadlines (waiter id -> server ms)
-- KEYS[6]  claims (waiter id -> "<ttl ms>:<owner token>")
-- ARGV[1]  the leaving waiter's id
-- ARGV[2]  its owner token
-- ARGV[3]  the mark of the calling client's waiters (see fair_release.lua)
--
-- Reply: {queued, released, fence, id, attempt}: queued 1 when it stood
--        in the queue; released 1 when N held its token (now deleted);
--        then as fair_release's reply, from hand_on: fence > 0 granted to
--        `id` (its claim from `attempt`; published unless `id` ends with
--        ARGV[3]), 0 with an id: `id` named
--        ("w:<id>"), 0 with '': nobody handed to (when the lease was
--        released with nobody queued, "-" was published, which wakes
--        every client's local waiters)
local rank = redis.call('ZRANK', KEYS[4], ARGV[1])
local queued = rank and 1 or 0
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[1])
local released = 0
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[2] then
  -- Deleted below, unless hand_on sets the next head's token over it.
  released = 1
elseif rank ~= 0 or holder then
  -- Not first, or the lease is someone else's: nobody's turn changed.
  return {queued, 0, 0, '', 0}
end
local now = now_ms()
local fence, head, attempt = hand_on(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], now, ARGV[3])
if fence ~= nil and fence > 0 then
  return {queued, released, fence, head, attempt}
end
if released == 1 then
  redis.call('DEL', KEYS[1])
end
if fence == nil then
  if released == 1 then
    wake(KEYS[3], '-')
  end
  return {queued, released, 0, '', 0}
end
return {queued, released, fence, head, attempt}
