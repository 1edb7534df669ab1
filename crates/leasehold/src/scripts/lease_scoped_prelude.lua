-- Prelude of every lease-scoped script (see `LeaseScript`): the body after
-- it runs only if the lease is still held by the caller's token, in the same
-- atomic step. Prepended to the body's *code* once, when the script is made;
-- data still travels only through KEYS and ARGV.
--
-- KEYS[1]  the lease N (taken off KEYS before the body runs)
-- ARGV[1]  the owner token (taken off ARGV before the body runs)
-- Reply:   the body's reply, or the error LEASEHOLD_LOST when N does not hold
--          the token (then nothing of the body ran)
local leasehold_lease = table.remove(KEYS, 1)
local leasehold_token = table.remove(ARGV, 1)
if redis.call('GET', leasehold_lease) ~= leasehold_token then
  return redis.error_reply('LEASEHOLD_LOST the lease is no longer held by this token; the script did not run')
end
