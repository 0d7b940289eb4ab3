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
