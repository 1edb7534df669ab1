-- Handing a fair lease to its queue's head, shared by fair_release.lua and
-- fair_cancel.lua (after fence.lua, wake.lua and fair_queue.lua).

-- The lease n is to be handed on (it still holds the token being
-- released, or it is free): give it to the head of the queue. A head past
-- its deadline (dead, or gone) leaves first, with every other waiter past
-- theirs (drop_dead), and the next one is the head: waiters behind a live
-- head are looked at when their turn comes. The head's token holds n for
-- its claim window, min(its ttl, its deadline - now), set over the token
-- released (no DEL first): a head that died while queued holds the lease
-- no longer than its place would have blocked the queue, and a live one
-- lengthens it by its first renewal. The fence moves on as any grant's
-- (next_fence), the head leaves the queue, and it alone is told:
-- "g:<id>:<fence>:<attempt>" on the wake channel, where <attempt> is the
-- number of its attempt that set the deadline: it counts the grant as
-- lasting min(ttl, patience) from that attempt's send, which is no later
-- than the deadline it is cut to, however late the message comes.
-- Not published when the head is a waiter of the client that sent the
-- script: the ids of a client's waiters end with its mark, `mine` (a part
-- of its id; '' for none), and that client grants its waiter from the
-- script's reply (a reply it lost, its waiter finds by an attempt of its
-- own: fair_acquire answers the grant).
--
-- Returns fence, id, attempt  granted to the head `id`: n holds its token
--         0, id, 0            the head `id` left no claim (a client of an
--                             older version, or Redis refused the SET):
--                             "w:<id>" was published, and it tries for
--                             itself, as before; n is as it was, and the
--                             caller deletes it if it held the token
--                             released
--         nil                 nobody queued: nothing published, n as it was
local function hand_on(n, fence, channel, queue, deadlines, tokens, now, mine)
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
      -- Its claim goes first: after that write Redis lets the script
      -- write on even out of memory (as the DEL of the lease did before,
      -- as in handover.lua). Should it refuse the SET all the same, the
      -- head keeps its claim and its place, and is named and tries for
      -- itself.
      redis.call('HDEL', tokens, head)
      local set = redis.pcall('SET', n, token, 'PX', string.format('%.0f', window))
      if not (type(set) == 'table' and set.err) then
        redis.call('ZREM', queue, head)
        redis.call('ZREM', deadlines, head)
        local f = next_fence(fence)
        if mine == '' or string.sub(head, -#mine) ~= mine then
          wake(channel, 'g:' .. head .. ':' .. string.format('%.0f', f) .. ':' .. attempt)
        end
        return f, head, tonumber(attempt)
      end
      redis.call('HSET', tokens, head, claim)
      if redis.call('PTTL', tokens) < 0 then
        -- It was the only claim: the hash is made anew, and expires with
        -- the queue's keys, no earlier than this deadline.
        redis.call('PEXPIREAT', tokens, deadline)
      end
    end
  end
  wake(channel, 'w:' .. head)
  return 0, head, 0
end
