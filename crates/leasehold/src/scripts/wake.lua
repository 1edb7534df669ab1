-- Waking waiters, shared by every script that releases or leaves a queue
-- (each of those is this file followed by its own body; see scripts/mod.rs).
-- The one place that says how a wake channel is published to and counted,
-- so that a deployment whose waiters listen otherwise (sharded pub/sub on
-- Redis Cluster) changes this file, not every script.

-- Publishes payload on the wake channel.
local function wake(channel, payload)
  redis.call('PUBLISH', channel, payload)
end

-- How many clients listen on the wake channel.
local function listeners(channel)
  return redis.call('PUBSUB', 'NUMSUB', channel)[2]
end

