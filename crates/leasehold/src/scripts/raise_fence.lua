-- raise_fence: lift the fencing counter of N to at least a fence granted by a
-- quorum of other masters (Redlock), so that any later quorum, which shares
-- a master with this one's, grants a higher fence.
--
-- KEYS[1]  the fencing counter of N (an integer that never expires)
-- ARGV[1]  the fence (a decimal integer, below 2^53)
--
-- Reply: 1  the counter is at least ARGV[1] now
if (tonumber(redis.call('GET', KEYS[1]) or '0') or 0) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1
