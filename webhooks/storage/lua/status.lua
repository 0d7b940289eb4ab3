-- Moving a delivery to a status, shared by the scripts that do it (record_attempt,
-- set_status): its fields, its due time, its indexes and its retention.
-- was: the status it had (the caller has read it, to know the record exists).
-- index_keys: the first index_count are the indexes it is in now; the rest are those
-- of the other statuses, each named by index_statuses at the same place, and only
-- those of the status it had are left: it is in no other (an index per status and
-- scope, moved only here and by create_deliveries), so the rest would be no-ops.
-- due_at: '' when no attempt is due.
-- archive_key: the archiver's list of finished deliveries ('' with no archive): a
-- delivery that becomes final enters it, scored by now, and one that leaves a final
-- status (redelivered) leaves it. event_template: the key of an event's deliveries,
-- whose expiry a final status pushes out as far as the record's. event_id: the record's,
-- when the caller has read it (false: it has none); nil: settle reads it.
local function settle(delivery_key, attempts_key, due_key, index_keys, index_count,
                      index_statuses, was, delivery_id, status, updated_at,
                      next_attempt_at, stop_reason, due_at, updated_score, ttl,
                      archive_key, event_template, event_id)
  redis.call('HSET', delivery_key, 'status', status, 'updated_at', updated_at,
             'next_attempt_at', next_attempt_at, 'stop_reason', stop_reason)
  if due_at ~= '' then redis.call('ZADD', due_key, due_at, delivery_id)
  else redis.call('ZREM', due_key, delivery_id) end
  local into = tonumber(index_count)
  for n, key in ipairs(index_keys) do
    if n <= into then redis.call('ZADD', key, updated_score, delivery_id)
    elseif index_statuses[n - into] == was then redis.call('ZREM', key, delivery_id) end
  end
  redis.call('EXPIRE', delivery_key, ttl)
  redis.call('EXPIRE', attempts_key, ttl)
  if status == 'delivered' or status == 'retries_exhausted' then
    if archive_key ~= '' then redis.call('ZADD', archive_key, updated_score, delivery_id) end
    if event_id == nil then event_id = redis.call('HGET', delivery_key, 'event_id') end
    if event_id then
      local event_key = string.format(event_template, redis.sha1hex(event_id))
      if redis.call('TTL', event_key) < tonumber(ttl) then redis.call('EXPIRE', event_key, ttl) end
    end
  elseif archive_key ~= '' then
    redis.call('ZREM', archive_key, delivery_id)
  end
end
