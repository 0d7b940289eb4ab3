-- Set a claimed run aside without attempting it (its destination's circuit is open):
-- its claim is released and its record says when it is due. The first run set aside
-- for an opening is scheduled at due_at, to probe; the others wait in the
-- destination's queue, costing no message each, until that probe's result wakes them
-- (leave, in destination.lua).
-- KEYS: running_key scheduled_key delivery_key due_key breaker_key waiting_key
-- ARGV: member now due_at due_iso delivery_id message queue_key
-- Uses: destination
-- message, queue_key: as wait_for_slot.lua's, kept for a run queued behind the probe.
-- Returns: 1 when scheduled to probe, 0 when queued behind the probe.
redis.call('ZREM', running_key, member)
redis.call('HSET', delivery_key, 'next_attempt_at', due_iso)
redis.call('ZADD', due_key, due_at, delivery_id)
local open_until = redis.call('HGET', breaker_key, 'open_until')
if open_until and redis.call('HGET', breaker_key, 'wake_at') == open_until then
  redis.call('ZADD', waiting_key, 'NX', now, member)
  redis.call('EXPIRE', waiting_key, '86400')
  if message ~= '' then keep(waiting_key, member, message, queue_key) end
  return 0
end
if open_until then redis.call('HSET', breaker_key, 'wake_at', open_until) end
redis.call('ZADD', scheduled_key, due_at, member)
return 1
