-- fair_release: end the lease N if the token holds it, and give it in the
-- same script to the waiter whose turn it is (no thundering herd, and no
-- script of the waiter's own: one script per hand-over, across processes).
-- (The client sends fence.lua, wake.lua, fair_queue.lua, fair_hand_on.lua,
-- then this file.)
--
-- KEYS[1]  N, the lease
-- KEYS[2]  the fencing counter of N
-- KEYS[3]  the wake channel of N
-- KEYS[4]  queue (waiter id -> arrival ticket)
-- KEYS[5]  deadlines (waiter id -> server ms)
-- KEYS[6]  claims (waiter id -> "<ttl ms>:<owner token>")
-- ARGV[1]  owner token
-- ARGV[2]  payload when nobody is queued (the releasing client's id)
-- ARGV[3]  the mark of the releasing client's waiters (their ids end with
--          it): a head of its own is told by this reply alone
--
-- Reply: {3, fence, id, attempt}  released and granted to the head
--                        waiter `id` (fair_hand_on.lua's hand_on): N holds its
--                        token for its claim window, with this fence, and
--                        "g:<id>:<fence>:<attempt>" was published, unless
--                        `id` ends with ARGV[3]
--        {1, 0, id, 0}   released, the head waiter named ("w:<id>"): it
--                        left no claim, and tries for itself
--        {2, 0, '', 0}   released, nobody queued: ARGV[2] was published,
--                        and the caller wakes its own local waiters (it
--                        skips the echo of its id)
--        {0, 0, '', 0}   not held: nothing was published
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0, 0, '', 0}
end
local now = now_ms()
local fence, head, attempt = hand_on(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], now, ARGV[3])
if fence ~= nil and fence > 0 then
  -- N holds the head's token now.
  return {3, fence, head, attempt}
end
redis.call('DEL', KEYS[1])
if fence == nil then
  wake(KEYS[3], ARGV[2])
  return {2, 0, '', 0}
end
return {1, 0, head, 0}
