-- The fenced store: the protected resource of the torture suite, a counter
-- that refuses any access whose fence is below the highest fence it has seen.
--
-- KEYS[1]  the counter (a string holding an integer; absent reads as 0)
-- KEYS[2]  the highest fence seen (absent reads as 0)
--          (both tagged with the lease name: one hash slot, the lease's)
-- ARGV[1]  "r" to read, "w" to write
-- ARGV[2]  the fence of the access, or "-" for an unfenced access (the
--          control arm: always accepted, the highest fence left alone)
-- ARGV[3]  for "w": the value to write
--
-- Reply: { accepted (1 or 0), the counter's value after the access }.
-- An accepted fenced access raises the highest fence seen to its own.
local fence = ARGV[2]
if fence ~= '-' then
  local f = tonumber(fence)
  local highest = tonumber(redis.call('GET', KEYS[2]) or '0')
  if f < highest then
    return { 0, tonumber(redis.call('GET', KEYS[1]) or '0') }
  end
  if f > highest then
    redis.call('SET', KEYS[2], fence)
  end
end
if ARGV[1] == 'w' then
  redis.call('SET', KEYS[1], ARGV[3])
end
return { 1, tonumber(redis.call('GET', KEYS[1]) or '0') }
