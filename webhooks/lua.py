"""The Lua scripts: each is one atomic step that would otherwise take several round trips.

They are registered by :mod:`webhooks.store` and :mod:`webhooks.schedule`, which
own the keys they touch.
"""

# Claim attempt retries+1 of a delivery's current cycle, reading what the attempt
# needs in the same step.
# KEYS: delivery hash, attempts list, running zset.
# ARGV: cycle, retries, now, lease until, run member.
# Returns {tag, url, endpoint_id, body, attempt number, cycle, status}; tag is one of
# claimed | missing | stale | final | recorded | busy.
CLAIM_ATTEMPT = """
local f = redis.call('HMGET', KEYS[1], 'url', 'endpoint_id', 'body', 'cycle', 'cycle_offset',
                     'status')
if not f[1] then return {'missing'} end
local cycle = tonumber(f[4] or '0') or 0
local number = (tonumber(f[5] or '0') or 0) + tonumber(ARGV[2]) + 1
local reply = {'', f[1], f[2] or '', '', tostring(number), tostring(cycle), f[6]}
if cycle ~= tonumber(ARGV[1]) then reply[1] = 'stale' return reply end
if f[6] == 'delivered' or f[6] == 'retries_exhausted' then reply[1] = 'final' return reply end
if redis.call('LLEN', KEYS[2]) >= number then reply[1] = 'recorded' return reply end
local held = redis.call('ZSCORE', KEYS[3], ARGV[5])
if held and tonumber(held) > tonumber(ARGV[3]) then reply[1] = 'busy' return reply end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
reply[1] = 'claimed'
reply[4] = f[3]
return reply
"""

# Record an attempt and everything it leads to.
# KEYS: delivery hash, attempts list, running, scheduled, due, all-deliveries index,
#       then one index per status, in DeliveryStatus order.
# ARGV: delivery id, attempt JSON, status, updated_at (ISO), next_attempt_at (ISO or ''),
#       stop reason, run member, next run member, park due ('' = no), due score ('' = none),
#       updated_at score, ttl seconds.
RECORD_ATTEMPT = """
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'updated_at', ARGV[4],
           'next_attempt_at', ARGV[5], 'stop_reason', ARGV[6])
redis.call('ZREM', KEYS[3], ARGV[7])
if ARGV[9] ~= '' then redis.call('ZADD', KEYS[4], ARGV[9], ARGV[8]) end
if ARGV[10] ~= '' then redis.call('ZADD', KEYS[5], ARGV[10], ARGV[1])
else redis.call('ZREM', KEYS[5], ARGV[1]) end
redis.call('ZADD', KEYS[6], ARGV[11], ARGV[1])
for i = 7, #KEYS do
  if KEYS[i] == KEYS[6] .. ':' .. ARGV[3] then redis.call('ZADD', KEYS[i], ARGV[11], ARGV[1])
  else redis.call('ZREM', KEYS[i], ARGV[1]) end
end
redis.call('EXPIRE', KEYS[1], ARGV[12])
redis.call('EXPIRE', KEYS[2], ARGV[12])
return 1
"""

# Move up to ARGV[3] members scored at or below ARGV[1] from KEYS[1] to KEYS[2],
# scored ARGV[2] there. Returns the members moved.
MOVE_DUE = """
local members = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[3])
for _, member in ipairs(members) do
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZADD', KEYS[2], ARGV[2], member)
end
return members
"""

# Let an attempt through to its destination, or say why not.
# KEYS: destination in-flight zset, destination breaker hash.
# ARGV: now, lease until, run member, concurrency limit.
# Returns {'ok'} | {'busy', average attempt ms} | {'open', open_until} | {'probe'}.
ENTER_DESTINATION = """
local open_until = tonumber(redis.call('HGET', KEYS[2], 'open_until') or '0')
local now = tonumber(ARGV[1])
if open_until > now then return {'open', tostring(open_until)} end
local probe = false
if open_until > 0 then
  -- Half-open: one attempt probes the destination; the rest wait for its result.
  -- A probe whose worker died gives way once its lease ends.
  local probing = redis.call('HGET', KEYS[2], 'probing')
  local probe_until = tonumber(redis.call('HGET', KEYS[2], 'probe_until') or '0')
  if probing and probing ~= ARGV[3] and probe_until > now then
    return {'open', tostring(now + 1)}
  end
  redis.call('HSET', KEYS[2], 'probing', ARGV[3], 'probe_until', ARGV[2])
  probe = true
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not probe and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return {'busy', redis.call('HGET', KEYS[2], 'avg_ms') or '100'}
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], 3600)
if probe then return {'probe'} end
return {'ok'}
"""

# After an attempt: leave the destination, let the longest-waiting run in, and move
# the destination's circuit breaker.
# KEYS: destination in-flight zset, destination breaker hash, destination waiting zset,
#       scheduled.
# ARGV: run member, succeeded (1/0), now, failures to open, cooldown seconds, max cooldown,
#       the attempt's duration in ms (kept as a moving average, to pace waiting runs).
# Returns the time the circuit is open until (0 when closed).
LEAVE_DESTINATION = """
redis.call('ZREM', KEYS[1], ARGV[1])
local next_run = redis.call('ZPOPMIN', KEYS[3])
if next_run[1] then redis.call('ZADD', KEYS[4], ARGV[3], next_run[1]) end
local avg = tonumber(redis.call('HGET', KEYS[2], 'avg_ms') or ARGV[7])
redis.call('HSET', KEYS[2], 'avg_ms', tostring(avg * 0.8 + tonumber(ARGV[7]) * 0.2))
redis.call('EXPIRE', KEYS[2], 86400)
if ARGV[2] == '1' then
  redis.call('HDEL', KEYS[2], 'failures', 'open_until', 'cooldown', 'probing', 'probe_until')
  return 0
end
local failures = redis.call('HINCRBY', KEYS[2], 'failures', 1)
local probing = redis.call('HGET', KEYS[2], 'probing')
local cooldown = tonumber(redis.call('HGET', KEYS[2], 'cooldown') or ARGV[5])
if probing == ARGV[1] then
  cooldown = math.min(cooldown * 2, tonumber(ARGV[6]))  -- the probe failed: wait longer
elseif failures < tonumber(ARGV[4]) then
  return 0
end
local open_until = tonumber(ARGV[3]) + cooldown
redis.call('HSET', KEYS[2], 'open_until', open_until, 'cooldown', cooldown)
redis.call('HDEL', KEYS[2], 'probing')
redis.call('EXPIRE', KEYS[2], 86400)
return tostring(open_until)
"""

# Put a claimed attempt back without making it: it waits until ARGV[2] in the
# scheduled set, its claim is released, and its record says when it is due.
# KEYS: running, scheduled, delivery hash, due. ARGV: run member, due, due (ISO), id.
DEFER_ATTEMPT = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[3], 'next_attempt_at', ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[4])
return 1
"""

# Queue a claimed run for a slot at a busy destination, without attempting it: it
# leaves the running set and waits in the destination's queue, which each
# finished attempt there pops (LEAVE_DESTINATION). No run spins while it waits.
# KEYS: running, destination waiting zset, delivery hash, due.
# ARGV: run member, now, expected start (score), expected start (ISO), delivery id.
# Returns the run's place in the queue (1 = next).
WAIT_FOR_SLOT = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], 86400)
redis.call('HSET', KEYS[3], 'next_attempt_at', ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[5])
return redis.call('ZRANK', KEYS[2], ARGV[1]) + 1
"""
