-- bump_fence: move the fencing counter of N on, as a grant would, without
-- granting anything (`leasehold release --force`): every fence handed out
-- before is now below the counter.
-- (The client sends fence.lua, then this file.)
--
-- KEYS[1]  the fencing counter of N (an integer that never expires)
--
-- Reply: the counter now
return next_fence(KEYS[1])
