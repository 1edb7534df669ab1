-- Prelude of every lease-scoped script (see `LeaseScript`): the body after
-- it runs only if the caller's token still holds what its guard holds, in
-- the same atomic step. Prepended to the body's *code* once, when the
-- script is made; data still travels only through KEYS and ARGV.
--
-- KEYS[1]  the key that proves the hold (taken off KEYS before the body
--          runs): the lease N, or the writer key of a read-write lock, or
--          the sorted set of a semaphore's permits or of a lock's readers
-- ARGV[1]  the owner token (taken off ARGV before the body runs)
-- ARGV[2]  how KEYS[1] proves it (taken off ARGV before the body runs):
--          'string' (the key holds the token) or 'member' (the token is a
--          member whose score, its expiry in server ms, is still ahead)
-- Reply:   the body's reply, or the error LEASEHOLD_LOST when the token
--          no longer holds (then nothing of the body ran)
local leasehold_hold = table.remove(KEYS, 1)
local leasehold_token = table.remove(ARGV, 1)
local leasehold_held
if table.remove(ARGV, 1) == 'member' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local until_ms = redis.call('ZSCORE', leasehold_hold, leasehold_token)
  leasehold_held = until_ms and tonumber(until_ms) > now
else
  leasehold_held = redis.call('GET', leasehold_hold) == leasehold_token
end
if not leasehold_held then
  return redis.error_reply('LEASEHOLD_LOST the lease is no longer held by this token; the script did not run')
end
