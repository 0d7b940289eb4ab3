-- Move a delivery to a status without recording an attempt (its retries stopped, or a
-- new cycle begun): its fields, its indexes and its due time, and optionally let go of
-- an attempt claim. A delivery that is gone (deleted meanwhile) stays gone: no key of
-- it comes back.
-- KEYS: delivery_key attempts_key due_key running_key metrics_key archive_key activity_key tenant_activity_key scheduled_key *index_keys
-- ARGV: delivery_id status updated_at next_attempt_at stop_reason due_at updated_score ttl release_member index_count event_template attempt_kind outcome_kind activity_ttl delivery_template attempts_template *index_statuses
-- Uses: status activity chain
-- index_keys, index_statuses, due_at, archive_key, event_template: as status.lua takes them. release_member: '' for none.
-- metrics_key: a delivery that becomes final here counts in its finished:<status>
-- ('' for metrics off). activity_key ... activity_ttl: as activity.lua takes them.
-- scheduled_key, delivery_template, attempts_template: as chain.lua takes them (a
-- final status wakes the next delivery of its ordering key).
-- Returns: 1, or 0 when the delivery is gone.
if release_member ~= '' then redis.call('ZREM', running_key, release_member) end
local was = redis.call('HGET', delivery_key, 'status')
if not was then return 0 end
if metrics_key ~= '' and (status == 'delivered' or status == 'retries_exhausted')
    and was ~= 'delivered' and was ~= 'retries_exhausted' then
  redis.call('HINCRBY', metrics_key, 'finished:' .. status, '1')
end
count_activity(activity_key, tenant_activity_key, delivery_key, was, attempt_kind,
               outcome_kind, activity_ttl)
settle(delivery_key, attempts_key, due_key, index_keys, index_count, index_statuses, was,
       delivery_id, status, updated_at, next_attempt_at, stop_reason, due_at, updated_score,
       ttl, archive_key, event_template)
if status == 'delivered' or status == 'retries_exhausted' then
  unchain(delivery_key, delivery_id, updated_score, scheduled_key, due_key, delivery_template,
          attempts_template)
end
return 1
