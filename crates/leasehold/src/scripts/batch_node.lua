-- batch_node: batch.lua for one node of a Redis Cluster. A script's
-- declared keys must share one slot, so this one declares none: it is
-- sent to the node that serves every name in it (by the client's map of
-- the slots), and the names travel in ARGV. Redis refuses a script's
-- access to a key the node does not serve ("non local key"): an operation
-- whose slot moved away raises inside its pcall, answers -9 and is run
-- again on its own, routed to the slot's new owner; it never writes here.
-- The client sends fence.lua, wake_sharded.lua, lease_ops.lua, then this.
--
-- Operation i (from 1) has five arguments:
-- ARGV[5i-4]  N, the lease
-- ARGV[5i-3]  acquire: the fencing counter of N; release: its wake channel
-- ARGV[5i-2]  'a' (acquire) or 'r' (release)
-- ARGV[5i-1]  owner token
-- ARGV[5i]    acquire: ttl in milliseconds (> 0); release: the wake payload
--
-- Reply: two integers per operation, as batch.lua.
local out = {}
for i = 1, #ARGV / 5 do
  local a = 5 * i - 4
  local op = ARGV[a + 2] == 'a' and acquire or release
  local ok, x, y = pcall(op, ARGV[a], ARGV[a + 1], ARGV[a + 3], ARGV[a + 4])
  if ok then
    out[2 * i - 1], out[2 * i] = x, y or 0
  else
    out[2 * i - 1], out[2 * i] = -9, 0
  end
end
return out
