-- Put a claimed run back without attempting it (its destination's circuit is open):
-- it waits in the schedule until due_at, its claim is released, and its record
-- says when it is due.
-- KEYS: running_key scheduled_key delivery_key due_key
-- ARGV: member due_at due_iso delivery_id
-- Returns: 1.
redis.call('ZREM', running_key, member)
redis.call('ZADD', scheduled_key, due_at, member)
redis.call('HSET', delivery_key, 'next_attempt_at', due_iso)
redis.call('ZADD', due_key, due_at, delivery_id)
return 1
