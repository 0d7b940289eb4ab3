-- Queue a claimed run behind its destination's rate limit, without attempting it: it
-- leaves the running set and waits in the destination's `throttled` queue, where it
-- costs no message until a reservation comes within `horizon` (pump, in
-- destination.lua; each finished attempt there pumps too). Its record says when it
-- is expected; should it be lost from the queue, the backstop brings it back.
-- KEYS: running_key throttled_key delivery_key due_key breaker_key paced_key scheduled_key
-- ARGV: member now expected_at expected_iso delivery_id limit rate horizon
-- Uses: destination
-- Returns: how many throttled runs it scheduled at once (this one, when its turn is near).
redis.call('ZREM', running_key, member)
redis.call('ZADD', throttled_key, 'NX', now, member)
redis.call('EXPIRE', throttled_key, '86400')
redis.call('HSET', delivery_key, 'next_attempt_at', expected_iso)
redis.call('ZADD', due_key, expected_at, delivery_id)
local _, effective_rate = effective(breaker_key, tonumber(limit), tonumber(rate))
return pump(breaker_key, throttled_key, paced_key, scheduled_key, tonumber(now), effective_rate,
            tonumber(horizon))
