-- Take one use of a rate limit, a sliding window: at most `limit` uses in any
-- `window` seconds, counted in a sorted set of the uses' times.
-- KEYS: uses_key
-- ARGV: now window limit use_id
-- Returns: 0 if taken; otherwise how many seconds until one is free again (a string).
local now, window = tonumber(now), tonumber(window)
redis.call('ZREMRANGEBYSCORE', uses_key, '-inf', now - window)
if redis.call('ZCARD', uses_key) < tonumber(limit) then
  redis.call('ZADD', uses_key, now, use_id)
  redis.call('EXPIRE', uses_key, math.ceil(window) + 1)
  return 0
end
local oldest = redis.call('ZRANGE', uses_key, 0, 0, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
