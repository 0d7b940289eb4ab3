-- The destination rules, as Lua functions the claim and record scripts share:
-- a concurrency limit and a circuit breaker per destination (an endpoint, or
-- host:port for bare URLs). webhooks/storage/destinations.py explains them and passes
-- their parameters; this file is where Redis applies them atomically.
--
-- Keys of one destination: `inflight` (zset of attempts in flight, scored by when
-- their lease ends), `breaker` (hash: failures, open_until, cooldown, probing,
-- probe_until, avg_ms) and `waiting` (zset of runs waiting for a slot, oldest first).

-- Let an attempt in, or say why not. Returns a flat list of named fields:
--   outcome  'ok' | 'probe' (the one attempt that tests an open circuit)
--            | 'busy' (at the limit: wait for a slot) | 'open' (circuit open)
--   retry_at (open)  when to come back
--   avg_ms, waiting (busy)  the destination's attempt time, and the runs ahead
local function enter(inflight, breaker, waiting, now, lease_until, member, limit)
  local open_until = tonumber(redis.call('HGET', breaker, 'open_until') or '0')
  if open_until > now then return {'outcome', 'open', 'retry_at', tostring(open_until)} end
  local probe = false
  if open_until > 0 then
    -- Half-open: one attempt probes the destination; the rest wait for its result.
    -- A probe whose worker died gives way once its lease ends.
    local probing = redis.call('HGET', breaker, 'probing')
    local probe_until = tonumber(redis.call('HGET', breaker, 'probe_until') or '0')
    if probing and probing ~= member and probe_until > now then
      return {'outcome', 'open', 'retry_at', tostring(now + 1)}
    end
    redis.call('HSET', breaker, 'probing', member, 'probe_until', lease_until)
    probe = true
  end
  redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now)
  if not probe and redis.call('ZCARD', inflight) >= limit then
    return {'outcome', 'busy', 'avg_ms', redis.call('HGET', breaker, 'avg_ms') or '100',
            'waiting', tostring(redis.call('ZCARD', waiting))}
  end
  redis.call('ZADD', inflight, lease_until, member)
  redis.call('EXPIRE', inflight, 3600)
  if probe then return {'outcome', 'probe'} end
  return {'outcome', 'ok'}
end

-- After an attempt: leave the destination, let the longest-waiting run in, and move
-- the circuit breaker. The attempt's duration is kept as a moving average, to pace
-- waiting runs. Returns the time the circuit is open until (0 when closed), and
-- whether a success cleared a breaker that had counted failures, or found none at all
-- (it expired: the circuit may have been open either way, and only then is the
-- open-circuits index touched).
local function leave(inflight, breaker, waiting, scheduled, member, succeeded, now,
                     failures_to_open, cooldown_default, max_cooldown, duration)
  redis.call('ZREM', inflight, member)
  local next_run = redis.call('ZPOPMIN', waiting)
  if next_run[1] then redis.call('ZADD', scheduled, now, next_run[1]) end
  local known = redis.call('HGET', breaker, 'avg_ms')
  local avg = tonumber(known or duration)
  redis.call('HSET', breaker, 'avg_ms', tostring(avg * 0.8 + tonumber(duration) * 0.2))
  redis.call('EXPIRE', breaker, 86400)
  if succeeded == '1' then
    local cleared = redis.call('HDEL', breaker, 'failures', 'open_until', 'cooldown',
                               'probing', 'probe_until')
    return 0, cleared > 0 or not known
  end
  local failures = redis.call('HINCRBY', breaker, 'failures', 1)
  local probing = redis.call('HGET', breaker, 'probing')
  local cooldown = tonumber(redis.call('HGET', breaker, 'cooldown') or cooldown_default)
  if probing == member then
    cooldown = math.min(cooldown * 2, tonumber(max_cooldown))  -- the probe failed: wait longer
  elseif failures < tonumber(failures_to_open) then
    return 0, false
  end
  local open_until = tonumber(now) + cooldown
  redis.call('HSET', breaker, 'open_until', open_until, 'cooldown', cooldown)
  redis.call('HDEL', breaker, 'probing')
  return tostring(open_until), false
end
