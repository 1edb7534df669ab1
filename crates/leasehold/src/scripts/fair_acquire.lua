-- fair_acquire: take the lease N in arrival order (fair mode).
--
-- Waiters stand in a queue in Redis; the lease goes to the head of the
-- queue only, so a newcomer cannot barge past waiters of other processes.
-- A waiter that will wait leaves its claim (its owner token and ttl) with
-- its place, so that a release gives it the lease in the release script
-- itself (fair_release.lua); this script is then its fallback only (a lost
-- message), or how it takes a free lease. A waiter that died or gave up
-- leaves the queue when its deadline passes.
-- (The client sends fence.lua, fair_queue.lua, then this file.)
--
-- KEYS[1]  N, the lease (string = owner token, PX = ttl), as in acquire.lua
-- KEYS[2]  the fencing counter of N
-- KEYS[3]  queue: sorted set, member = waiter id, score = arrival ticket
-- KEYS[4]  deadlines: sorted set, member = waiter id, score = when it stops
--          waiting (server ms)
-- KEYS[5]  ticket counter (expires with the queue)
-- KEYS[6]  claims: hash, waiter id -> "<ttl ms>:<attempt>:<owner token>"
--          (expires with the queue)
-- ARGV[1]  owner token
-- ARGV[2]  ttl in milliseconds
-- ARGV[3]  waiter id (random, not a secret)
-- ARGV[4]  how long the waiter keeps its place, in ms (0: it will not
--          wait). A live waiter refreshes it at each attempt; a dead one
--          leaves the queue when it runs out.
-- ARGV[5]  this attempt's number among the waiter's attempts: a grant
--          names the attempt that set the deadline it was cut to, so that
--          the waiter counts the grant from that attempt's send
--
-- Reply: {1, fence}    acquired (the waiter left the queue); fence as in
--                      acquire.lua. When N already holds the token (a
--                      release granted it to this waiter, whose message
--                      was lost or raced this attempt), the TTL is reset
--                      to ARGV[2] and the fence of that grant is returned.
--        {0, wait_ms}  not its turn or held; wait_ms is the holder's PTTL,
--                      or, when the lease is free but another waiter is
--                      first, how long until that waiter's deadline
-- The waiter ARGV[3] takes its place (or keeps it: a later attempt of a
-- queued waiter) with its deadline, now + patience, and its claim; the
-- queue's keys then live past that deadline. Returns its new ticket, or
-- nil when it kept its place.
local function join(now, patience)
  local ticket
  -- A waiter's first attempt is not queued yet (NX all the same, should
  -- a retry of the call come twice): no look. A ticket drawn and not
  -- used is harmless, tickets only need to increase.
  if ARGV[5] == '1' or not redis.call('ZSCORE', KEYS[3], ARGV[3]) then
    ticket = redis.call('INCR', KEYS[5])
    redis.call('ZADD', KEYS[3], 'NX', ticket, ARGV[3])
  end
  redis.call('ZADD', KEYS[4], now + patience, ARGV[3])
  redis.call('HSET', KEYS[6], ARGV[3], ARGV[2] .. ':' .. ARGV[5] .. ':' .. ARGV[1])
  -- The queue's four keys share one expiry, no earlier than any queued
  -- waiter's deadline: it only moves later, by twice this waiter's
  -- patience, when it falls short of the new deadline; so most joins
  -- only look. A key made anew has none: the queue and its deadlines
  -- (emptied together), the claims (emptied with them, or apart by a
  -- client of an older version, which leaves none), the ticket counter
  -- (it starts again at 1).
  -- (PTTL counts from the script's start or from its own call, as the
  -- version of Redis has it: 1 ms of margin here, and the new expiry is
  -- counted from a clock read after it, so that it is never earlier.)
  local left = redis.call('PTTL', KEYS[3])
  local claims_left = redis.call('PTTL', KEYS[6])
  if ticket == 1 or left <= patience or claims_left <= patience then
    local last = now_ms() + math.max(2 * patience, left, claims_left)
    redis.call('PEXPIREAT', KEYS[3], last)
    redis.call('PEXPIREAT', KEYS[4], last)
    redis.call('PEXPIREAT', KEYS[5], last)
    redis.call('PEXPIREAT', KEYS[6], last)
  end
  return ticket
end

local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  leave_queue(KEYS[3], KEYS[4], KEYS[6], ARGV[3])
  return {1, tonumber(redis.call('GET', KEYS[2])) or next_fence(KEYS[2])}
end
local now = now_ms()
local head
if not holder then
  -- Only a free lease looks at the queue's head, after the waiters past
  -- their deadline left: a dead head blocks a free lease until its
  -- deadline, no longer. (While the lease is held, a release drops them
  -- when one becomes the head: fair_hand_on.lua.)
  drop_dead(KEYS[3], KEYS[4], KEYS[6], now)
  head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
  if head == nil or head == ARGV[3] then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    leave_queue(KEYS[3], KEYS[4], KEYS[6], ARGV[3])
    return {1, next_fence(KEYS[2])}
  end
end
local patience = tonumber(ARGV[4])
if patience > 0 and join(now, patience) == 1 and head then
  -- The ticket counter started again (it was lost): this waiter may
  -- stand first now.
  head = redis.call('ZRANGE', KEYS[3], 0, 0)[1]
end
if head then
  local until_gone = redis.call('ZSCORE', KEYS[4], head)
  return {0, math.max(0, tonumber(until_gone or now) - now)}
end
return {0, redis.call('PTTL', KEYS[1])}
