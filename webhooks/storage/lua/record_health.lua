-- An endpoint's failure clock after an attempt: cleared by a success; after a failure,
-- started (if not running) and, when the delivery was exhausted, one more exhausted.
-- An endpoint that is gone (deleted while the attempt was in flight) gets no clock.
-- KEYS: endpoint_key health_key
-- ARGV: succeeded exhausted now
-- Returns the clock's fields (failing_since, exhausted), or none.
if redis.call('EXISTS', endpoint_key) == 0 or succeeded == '1' then
  redis.call('DEL', health_key)
  return {}
end
redis.call('HSETNX', health_key, 'failing_since', now)
if exhausted == '1' then redis.call('HINCRBY', health_key, 'exhausted', '1') end
return redis.call('HGETALL', health_key)
