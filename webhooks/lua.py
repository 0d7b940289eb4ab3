"""The Lua scripts: each is one atomic step that would otherwise take several round trips.

They are registered by :mod:`webhooks.store`, :mod:`webhooks.schedule` and
:mod:`webhooks.isolation`, which own the keys they touch.
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

# Let an attempt through to its destination, or say why not. A Lua function, so
# that CLAIM_ATTEMPT can run it in the same call.
# Returns {'ok'} | {'busy', average attempt ms, runs already waiting} | {'open', open_until}
# | {'probe'}.
_ENTER_FN = """
local function enter(inflight, breaker, waiting, now, lease_until, member, limit)
  local open_until = tonumber(redis.call('HGET', breaker, 'open_until') or '0')
  if open_until > now then return {'open', tostring(open_until)} end
  local probe = false
  if open_until > 0 then
    -- Half-open: one attempt probes the destination; the rest wait for its result.
    -- A probe whose worker died gives way once its lease ends.
    local probing = redis.call('HGET', breaker, 'probing')
    local probe_until = tonumber(redis.call('HGET', breaker, 'probe_until') or '0')
    if probing and probing ~= member and probe_until > now then
      return {'open', tostring(now + 1)}
    end
    redis.call('HSET', breaker, 'probing', member, 'probe_until', lease_until)
    probe = true
  end
  redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now)
  if not probe and redis.call('ZCARD', inflight) >= limit then
    return {'busy', redis.call('HGET', breaker, 'avg_ms') or '100',
            tostring(redis.call('ZCARD', waiting))}
  end
  redis.call('ZADD', inflight, lease_until, member)
  redis.call('EXPIRE', inflight, 3600)
  if probe then return {'probe'} end
  return {'ok'}
end
"""

# KEYS: destination in-flight zset, destination breaker hash, destination waiting zset.
# ARGV: now, lease until, run member, concurrency limit.
ENTER_DESTINATION = _ENTER_FN + """
return enter(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[1]), ARGV[2], ARGV[3], tonumber(ARGV[4]))
"""

# After an attempt: leave the destination, let the longest-waiting run in, and move
# the destination's circuit breaker; the attempt's duration is kept as a moving
# average, to pace waiting runs. Run by RECORD_ATTEMPT.
# Returns the time the circuit is open until (0 when closed).
_LEAVE_FN = """
local function leave(inflight, breaker, waiting, scheduled, member, succeeded, now,
                     failures_to_open, cooldown_default, max_cooldown, duration)
  redis.call('ZREM', inflight, member)
  local next_run = redis.call('ZPOPMIN', waiting)
  if next_run[1] then redis.call('ZADD', scheduled, now, next_run[1]) end
  local avg = tonumber(redis.call('HGET', breaker, 'avg_ms') or duration)
  redis.call('HSET', breaker, 'avg_ms', tostring(avg * 0.8 + tonumber(duration) * 0.2))
  redis.call('EXPIRE', breaker, 86400)
  if succeeded == '1' then
    redis.call('HDEL', breaker, 'failures', 'open_until', 'cooldown', 'probing', 'probe_until')
    return 0
  end
  local failures = redis.call('HINCRBY', breaker, 'failures', 1)
  local probing = redis.call('HGET', breaker, 'probing')
  local cooldown = tonumber(redis.call('HGET', breaker, 'cooldown') or cooldown_default)
  if probing == member then
    cooldown = math.min(cooldown * 2, tonumber(max_cooldown))  -- the probe failed: wait longer
  elseif failures < tonumber(failures_to_open) then
    return 0
  end
  local open_until = tonumber(now) + cooldown
  redis.call('HSET', breaker, 'open_until', open_until, 'cooldown', cooldown)
  redis.call('HDEL', breaker, 'probing')
  return tostring(open_until)
end
"""

# Claim attempt retries+1 of a delivery's current cycle, with everything the attempt
# needs, in one call: the delivery's fields, its endpoint, and a place at its
# destination (enter). The endpoint and destination keys come from templates
# (string.format with the id), as the keys are only known from the record.
# KEYS: delivery hash, attempts list, running zset.
# ARGV: cycle, retries, now, lease until, run member, endpoint key template,
#       in-flight key template, breaker key template, concurrency limit, waiting key
#       template.
# Returns {tag, url, endpoint_id, body, attempt number, cycle, status, endpoint JSON,
# entry tag, entry value, runs already waiting, destination}; tag is one of claimed | missing |
# stale | final | recorded | busy. Entry tag '' means not entered: a record without a
# destination (written by an older version), or an endpoint that is gone or disabled.
CLAIM_ATTEMPT = _ENTER_FN + """
local f = redis.call('HMGET', KEYS[1], 'url', 'endpoint_id', 'body', 'cycle', 'cycle_offset',
                     'status', 'destination')
if not f[1] then return {'missing'} end
local cycle = tonumber(f[4] or '0') or 0
local number = (tonumber(f[5] or '0') or 0) + tonumber(ARGV[2]) + 1
local reply = {'', f[1], f[2] or '', '', tostring(number), tostring(cycle), f[6], '', '', '',
               '', f[7] or ''}
if cycle ~= tonumber(ARGV[1]) then reply[1] = 'stale' return reply end
if f[6] == 'delivered' or f[6] == 'retries_exhausted' then reply[1] = 'final' return reply end
if redis.call('LLEN', KEYS[2]) >= number then reply[1] = 'recorded' return reply end
local held = redis.call('ZSCORE', KEYS[3], ARGV[5])
if held and tonumber(held) > tonumber(ARGV[3]) then reply[1] = 'busy' return reply end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
reply[1] = 'claimed'
reply[4] = f[3]
if f[2] and f[2] ~= '' then
  local endpoint = redis.call('GET', string.format(ARGV[6], f[2]))
  if not endpoint then return reply end
  reply[8] = endpoint
  if not cjson.decode(endpoint)['enabled'] then return reply end
end
if f[7] and f[7] ~= '' then
  local entry = enter(string.format(ARGV[7], f[7]), string.format(ARGV[8], f[7]),
                      string.format(ARGV[10], f[7]), tonumber(ARGV[3]), ARGV[4], ARGV[5],
                      tonumber(ARGV[9]))
  reply[9] = entry[1]
  reply[10] = entry[2] or ''
  reply[11] = entry[3] or ''
end
return reply
"""

# Record an attempt and everything it leads to, and leave its destination.
# KEYS: delivery hash, attempts list, running, scheduled, due, all-deliveries index,
#       then one index per status, in DeliveryStatus order.
# ARGV: delivery id, attempt JSON, status, updated_at (ISO), next_attempt_at (ISO or ''),
#       stop reason, run member, next run member, park due ('' = no), due score ('' = none),
#       updated_at score, ttl seconds, then the destination ('' = none entered),
#       succeeded (1/0), now, failures to open, cooldown, max cooldown, duration ms, and
#       the in-flight, breaker and waiting key templates.
# Returns the time the destination's circuit is open until (0 when closed).
RECORD_ATTEMPT = _LEAVE_FN + """
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
local dest = ARGV[13]
if dest == '' then return 0 end
return leave(string.format(ARGV[20], dest), string.format(ARGV[21], dest),
             string.format(ARGV[22], dest), KEYS[4], ARGV[7], ARGV[14], ARGV[15], ARGV[16],
             ARGV[17], ARGV[18], ARGV[19])
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
# finished attempt there pops (leave, in RECORD_ATTEMPT). No run spins while it waits.
# KEYS: running, destination waiting zset, delivery hash, due.
# ARGV: run member, now, expected start (score), expected start (ISO), delivery id.
WAIT_FOR_SLOT = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], 86400)
redis.call('HSET', KEYS[3], 'next_attempt_at', ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[5])
return 1
"""
