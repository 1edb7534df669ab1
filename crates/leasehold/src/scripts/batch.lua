-- batch: acquires and releases of plain leases, many names in one call,
-- run in order, each exactly as acquire.lua or release.lua runs it. The
-- client sends fence.lua, lease_ops.lua, then this file, instead of a
-- script call per operation when many of its tasks acquire and release at
-- once.
--
-- Operation i (from 1) has two keys and three arguments:
-- KEYS[2i-1]  N, the lease
-- KEYS[2i]    acquire: the fencing counter of N; release: its wake channel
-- ARGV[3i-2]  'a' (acquire) or 'r' (release)
-- ARGV[3i-1]  owner token
-- ARGV[3i]    acquire: ttl in milliseconds (> 0); release: the wake payload
--
-- Reply: two integers per operation.
--        acquire: {1, fence} or {0, pttl_ms}, as acquire.lua
--        release: {1, 0} or {0, 0}, as release.lua
--        {-9, 0}  the operation raised an error (a key of another type,
--                 say). The operations after it still run. The client
--                 runs that one again on its own, to get the error.
local out = {}
for i = 1, #KEYS / 2 do
  local k, a = 2 * i - 1, 3 * i - 2
  local op = ARGV[a] == 'a' and acquire or release
  local ok, x, y = pcall(op, KEYS[k], KEYS[k + 1], ARGV[a + 1], ARGV[a + 2])
  if ok then
    out[k], out[k + 1] = x, y or 0
  else
    out[k], out[k + 1] = -9, 0
  end
end
return out
