-- Counting into the hourly activity counters the charts read (storage/activity.py),
-- shared by the scripts that record attempts and stop deliveries, so that a chart
-- never scans deliveries. activity_key: every tenant's hour (fields: the kind);
-- tenant_activity_key: the delivery's tenant's hour, '' for none (fields:
-- <kind>:<endpoint id>). attempt_kind: 'failed_attempts' or ''; outcome_kind: the
-- delivery's outcome, or ''. was: the status it had: a delivery already final
-- (stopped while its last attempt was in flight) has its outcome counted already.
-- endpoint_id: the record's, when the caller has read it; nil: read here if needed.
local function count_activity(activity_key, tenant_activity_key, delivery_key, was,
                              attempt_kind, outcome_kind, ttl, endpoint_id)
  local kinds = {}
  if attempt_kind ~= '' then kinds[#kinds + 1] = attempt_kind end
  if outcome_kind ~= '' and was ~= 'delivered' and was ~= 'retries_exhausted' then
    kinds[#kinds + 1] = outcome_kind
  end
  if #kinds == 0 then return end
  if tenant_activity_key == '' then
    endpoint_id = ''
  elseif endpoint_id == nil then
    endpoint_id = redis.call('HGET', delivery_key, 'endpoint_id') or ''
  end
  -- An hour's hash is made by its first field, so a field that starts at 1 is the
  -- only time its expiry may be missing: set then, not on every count.
  for _, kind in ipairs(kinds) do
    if redis.call('HINCRBY', activity_key, kind, '1') == 1 then
      redis.call('EXPIRE', activity_key, ttl)
    end
    if tenant_activity_key ~= ''
        and redis.call('HINCRBY', tenant_activity_key, kind .. ':' .. endpoint_id, '1') == 1 then
      redis.call('EXPIRE', tenant_activity_key, ttl)
    end
  end
end
