-- rw_write_release: end this token's write lock and withdraw its intent.
--
-- KEYS[1]  writer string
-- KEYS[2]  intent string
-- KEYS[3]  the wake channel of N
-- ARGV[1]  owner token
-- ARGV[2]  payload of the wake message (the releasing client's id)
--
-- Reply: 1  the write lock was this token's, and is released
--        0  it was not (expired, or never taken); an intent of this token
--           (a writer that stopped waiting) is withdrawn all the same
-- Either change wakes the waiters: readers may be waiting behind the intent.
local changed = false
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  changed = true
end
local released = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  released = 1
  changed = true
end
if changed then
  redis.call('PUBLISH', KEYS[3], ARGV[2])
end
return released
