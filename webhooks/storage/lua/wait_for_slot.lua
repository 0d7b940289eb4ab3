-- Queue a claimed run for a slot at its busy destination, without attempting it: it
-- leaves the running set and waits in the destination's queue, which each finished
-- attempt there pops (leave, in destination.lua). No run spins while it waits.
-- KEYS: running_key waiting_key delivery_key due_key
-- ARGV: member now expected_at expected_iso delivery_id
-- Returns: 1.
redis.call('ZREM', running_key, member)
redis.call('ZADD', waiting_key, 'NX', now, member)
redis.call('EXPIRE', waiting_key, 86400)
redis.call('HSET', delivery_key, 'next_attempt_at', expected_iso)
redis.call('ZADD', due_key, expected_at, delivery_id)
return 1
