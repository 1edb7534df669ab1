-- Handing a fair lease to its queue's head, shared by fair_release.lua and
-- fair_cancel.lua (after fence.lua, wake.lua and fair_queue.lua).

-- The lease n is free (just deleted): give it to the head of the queue.
-- A head past its deadline (dead, or gone) leaves first, with every other
-- waiter past theirs (drop_dead), and the next one is the head: waiters
-- behind a live head wait for their turn to be looked at. The head's token holds n for its claim window,
-- min(its ttl, its deadline - now): a head that died while queued holds
-- the lease no longer than its place would have blocked the queue, and a
-- live one lengthens it by its first renewal. The fence moves on as any
-- grant's (next_fence), the head leaves the queue, and it alone is told:
-- "g:<id>:<fence>:<attempt>" on the wake channel, where <attempt> is the
-- number of its attempt that set the deadline: it counts the grant as
-- lasting min(ttl, patience) from that attempt's send, which is no later
-- than the deadline it is cut to, however late the message comes.
--
-- Returns fence, id, attempt  granted to the head `id`
--         0, id, 0            the head `id` left no claim (a client of an
--                             older version, or Redis refused the SET):
--                             "w:<id>" was published, and it tries for
--                             itself, as before
--         nil                 nobody queued: nothing published
local function hand_on(n, fence, channel, queue, deadlines, tokens, now)
  local head = redis.call('ZRANGE', queue, 0, 0)[1]
  if not head then
    return nil
  end
  local deadline = tonumber(redis.call('ZSCORE', deadlines, head))
  if deadline and deadline <= now then
    drop_dead(queue, deadlines, tokens, now)
    head = redis.call('ZRANGE', queue, 0, 0)[1]
    if not head then
      return nil
    end
    deadline = tonumber(redis.call('ZSCORE', deadlines, head))
  end
  local claim = redis.call('HGET', tokens, head)
  if claim and deadline and deadline > now then
    local ttl, attempt, token = string.match(claim, '^(%d+):(%d+):(.*)$')
    if ttl then
      local window = math.min(tonumber(ttl), deadline - now)
      -- As handover.lua: the lease was deleted first (always allowed out
      -- of memory); should Redis refuse the SET all the same, the head is
      -- named and tries for itself.
      local set = redis.pcall('SET', n, token, 'PX', string.format('%.0f', window))
      if not (type(set) == 'table' and set.err) then
        local f = next_fence(fence)
        leave_queue(queue, deadlines, tokens, head)
        wake(channel, 'g:' .. head .. ':' .. string.format('%.0f', f) .. ':' .. attempt)
        return f, head, tonumber(attempt)
      end
    end
  end
  wake(channel, 'w:' .. head)
  return 0, head, 0
end
