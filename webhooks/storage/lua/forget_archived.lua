-- Forget deliveries whose rows the archive has committed: the record, its attempts
-- and every index entry, leaving one idempotency marker each. A delivery that
-- changed since the archiver read it (redelivered, so no longer the version written)
-- or is gone (its tenant deleted) is only let go of: it stays as it is.
-- KEYS: archiving_key archivable_key all_key
-- ARGV: delivery_template attempts_template tenant_template endpoint_template event_template idempotency_template bucket_seconds window waiting_template *rest
-- Uses: destination
-- waiting_template: keys.py destination_waiting's, which names the admission keys: a
-- first run let out at creation whose message nobody claimed (the delivery finished
-- otherwise, skipped say) lets its place go with the record.
-- all_key: every delivery by creation; all_key .. ':' .. status is a status's index,
-- and a tenant's indexes are tenant_template's key and that key .. ':' .. status
-- (keys.py deliveries and tenant_deliveries).
-- rest: delivery_id updated_at created digest, per delivery: updated_at as read (the
-- version archived), created as Unix seconds, digest the start of the SHA-1 of its
-- body. The marker, delivery_id -> digest:created, goes in the hash of created's
-- bucket (bucket_seconds long), which expires `window` after the bucket ends.
-- Returns: how many were forgotten.
local forgotten = 0
for i = 1, #rest, 4 do
  local id, version, created, digest = rest[i], rest[i + 1], tonumber(rest[i + 2]), rest[i + 3]
  redis.call('ZREM', archiving_key, id)
  local key = string.format(delivery_template, id)
  local f = redis.call('HMGET', key, 'status', 'updated_at', 'tenant_id', 'endpoint_id',
                       'event_id', 'destination')
  local status = f[1]
  if f[2] == version and (status == 'delivered' or status == 'retries_exhausted') then
    redis.call('DEL', key, string.format(attempts_template, id))
    redis.call('ZREM', archivable_key, id)
    redis.call('ZREM', all_key, id)
    redis.call('ZREM', all_key .. ':' .. status, id)
    if f[3] and f[3] ~= '' then
      local tenant_key = string.format(tenant_template, f[3])
      redis.call('ZREM', tenant_key, id)
      redis.call('ZREM', tenant_key .. ':' .. status, id)
    end
    if f[4] and f[4] ~= '' then redis.call('ZREM', string.format(endpoint_template, f[4]), id) end
    if f[5] then
      redis.call('SREM', string.format(event_template, redis.sha1hex(f[5])), id)
    end
    if f[6] and f[6] ~= '' then
      local waiting = string.format(waiting_template, f[6])
      local admit, admitted = admission_keys(waiting)
      local first = id .. ':0:0'
      redis.call('ZREM', admitted, first)
      redis.call('ZREM', waiting, first)
      redis.call('HDEL', admit, first, 'q:' .. first)
    end
    local bucket = math.floor(created / tonumber(bucket_seconds))
    local marker_key = string.format(idempotency_template, bucket)
    redis.call('HSET', marker_key, id, digest .. ':' .. math.floor(created))
    redis.call('EXPIREAT', marker_key,
               math.ceil((bucket + 1) * tonumber(bucket_seconds) + tonumber(window)))
    forgotten = forgotten + 1
  end
end
return forgotten
