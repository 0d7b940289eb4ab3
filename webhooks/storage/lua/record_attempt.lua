-- Record an attempt and everything it leads to, atomically: append it, move the
-- delivery to its new status (and status index), release the attempt's claim,
-- park the next run when it waits long, set the overdue mark, refresh the
-- retention, and leave the destination (moving its circuit breaker). Safe to
-- repeat: an attempt already on record (a retried call whose answer was lost)
-- changes nothing.
-- KEYS: delivery_key attempts_key running_key scheduled_key due_key all_index_key status_index_key *other_index_keys
-- ARGV: delivery_id number attempt status updated_at next_attempt_at stop_reason member next_member park_at due_at updated_score ttl destination succeeded failures_to_open cooldown max_cooldown duration_ms inflight_template breaker_template waiting_template
-- Uses: destination
-- other_index_keys: the other status indexes, which the delivery leaves.
-- park_at / due_at: '' for none. destination: '' when none was entered.
-- Returns named fields: open_until (when the destination's circuit opened; 0: closed),
-- and recorded: 0 when the attempt was on record already.
if redis.call('LLEN', attempts_key) >= tonumber(number) then
  return {'open_until', '0', 'recorded', '0'}
end
redis.call('RPUSH', attempts_key, attempt)
redis.call('HSET', delivery_key, 'status', status, 'updated_at', updated_at,
           'next_attempt_at', next_attempt_at, 'stop_reason', stop_reason)
redis.call('ZREM', running_key, member)
if park_at ~= '' then redis.call('ZADD', scheduled_key, park_at, next_member) end
if due_at ~= '' then redis.call('ZADD', due_key, due_at, delivery_id)
else redis.call('ZREM', due_key, delivery_id) end
redis.call('ZADD', all_index_key, updated_score, delivery_id)
redis.call('ZADD', status_index_key, updated_score, delivery_id)
for _, other in ipairs(other_index_keys) do redis.call('ZREM', other, delivery_id) end
redis.call('EXPIRE', delivery_key, ttl)
redis.call('EXPIRE', attempts_key, ttl)
if destination == '' then return {'open_until', '0', 'recorded', '1'} end
return {'open_until', tostring(leave(
  string.format(inflight_template, destination), string.format(breaker_template, destination),
  string.format(waiting_template, destination), scheduled_key, member, succeeded,
  updated_score, failures_to_open, cooldown, max_cooldown, duration_ms)), 'recorded', '1'}
