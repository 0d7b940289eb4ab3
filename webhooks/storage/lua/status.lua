-- Moving a delivery to a status, shared by the scripts that do it (record_attempt,
-- set_status): its fields, its due time, its indexes and its retention.
-- index_keys: the first index_count are the indexes it is in now; the rest it leaves.
-- due_at: '' when no attempt is due.
local function settle(delivery_key, attempts_key, due_key, index_keys, index_count,
                      delivery_id, status, updated_at, next_attempt_at, stop_reason, due_at,
                      updated_score, ttl)
  redis.call('HSET', delivery_key, 'status', status, 'updated_at', updated_at,
             'next_attempt_at', next_attempt_at, 'stop_reason', stop_reason)
  if due_at ~= '' then redis.call('ZADD', due_key, due_at, delivery_id)
  else redis.call('ZREM', due_key, delivery_id) end
  for n, key in ipairs(index_keys) do
    if n <= tonumber(index_count) then redis.call('ZADD', key, updated_score, delivery_id)
    else redis.call('ZREM', key, delivery_id) end
  end
  redis.call('EXPIRE', delivery_key, ttl)
  redis.call('EXPIRE', attempts_key, ttl)
end
