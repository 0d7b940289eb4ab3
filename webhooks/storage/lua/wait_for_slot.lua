-- Queue a claimed run for a slot at its busy destination, without attempting it: it
-- leaves the running set and waits in the destination's queue, which each finished
-- attempt there pops (leave, in destination.lua). No run spins while it waits.
-- KEYS: running_key waiting_key delivery_key due_key inflight_key scheduled_key
-- ARGV: member now expected_at expected_iso delivery_id limit message queue_key
-- Uses: destination
-- message: the run's message as taken off queue_key, a list in this Redis ('' for
-- none): kept (keep), so that the wake pushes it straight back, not the promoter.
-- Returns: how many waiting runs it woke at once (0 when the destination is still full).
redis.call('ZREM', running_key, member)
redis.call('ZADD', waiting_key, 'NX', now, member)
redis.call('EXPIRE', waiting_key, '86400')
if message ~= '' then keep(waiting_key, member, message, queue_key) end
redis.call('HSET', delivery_key, 'next_attempt_at', expected_iso)
redis.call('ZADD', due_key, expected_at, delivery_id)
-- The attempts in flight when the claim found the destination full may all have
-- left since, each popping a queue this run was not in yet: nothing would wake it
-- then. So slots free now wake the queue's oldest runs here, as leave would have.
redis.call('ZREMRANGEBYSCORE', inflight_key, '-inf', now)
local free = tonumber(limit) - redis.call('ZCARD', inflight_key)
local woken = 0
while woken < free do
  local head = redis.call('ZPOPMIN', waiting_key)
  if not head[1] then break end
  if not release(waiting_key, head[1]) then redis.call('ZADD', scheduled_key, now, head[1]) end
  woken = woken + 1
end
return woken
