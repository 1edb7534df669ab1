-- Waking waiters on Redis Cluster: wake.lua's functions by sharded pub/sub
-- (Redis 7), so that the message stays on the channel's slot's master,
-- where the waiters' subscriber listens, and the count of listeners is
-- that node's. Heads the same scripts as wake.lua (see scripts/mod.rs).

-- Publishes payload on the wake channel.
local function wake(channel, payload)
  redis.call('SPUBLISH', channel, payload)
end

-- How many clients listen on the wake channel.
local function listeners(channel)
  return redis.call('PUBSUB', 'SHARDNUMSUB', channel)[2]
end

