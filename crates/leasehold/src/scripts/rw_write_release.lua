-- rw_write_release: end this token's write lock and withdraw its intent.
--
-- KEYS[1]  writer string
-- KEYS[2]  intent string
-- KEYS[3]  the wake channel of N
-- ARGV[1]  owner token
-- ARGV[2]  payload of the wake message (the releasing client's id)
--
-- Reply: 1  the write lock was this token's, and is released
--        2  it was not (expired, or never taken), but this token's intent
--           (a writer that stopped waiting) was withdrawn
--        0  neither: nothing was published
-- Either change wakes the waiters: readers may be waiting behind the intent
-- (the caller wakes its own local waiters: it skips the echo of its id).
local changed = false
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  changed = true
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  wake(KEYS[3], ARGV[2])
  return 1
end
if changed then
  wake(KEYS[3], ARGV[2])
  return 2
end
return 0
