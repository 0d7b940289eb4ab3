-- Bring an archived delivery back into Redis as it was archived (finished), so that
-- redeliver can start a new cycle of it: its record, its attempts and its index
-- entries. It is listed as archivable from now, so that it goes back to the archive
-- even if nothing else happens to it. A delivery that is in Redis already is left alone.
-- KEYS: delivery_key attempts_key archivable_key endpoint_key event_key *index_keys
-- ARGV: created_score updated_score now ttl created_count field_count *rest
-- endpoint_key: '' for none. index_keys: the first created_count are ordered by
-- creation (created_score), the rest by status (updated_score).
-- rest: field_count field value pairs (body included), then the attempts' JSON.
-- Returns: 1 if restored, 0 if the record was there.
if redis.call('EXISTS', delivery_key) == 1 then return 0 end
local count = tonumber(field_count)
local fields = {}
for i = 1, 2 * count do fields[i] = rest[i] end
redis.call('HSET', delivery_key, unpack(fields))
redis.call('EXPIRE', delivery_key, ttl)
for i = 2 * count + 1, #rest do redis.call('RPUSH', attempts_key, rest[i]) end
if #rest > 2 * count then redis.call('EXPIRE', attempts_key, ttl) end
local id = redis.call('HGET', delivery_key, 'id')
for n, key in ipairs(index_keys) do
  if n <= tonumber(created_count) then redis.call('ZADD', key, created_score, id)
  else redis.call('ZADD', key, updated_score, id) end
end
if endpoint_key ~= '' then redis.call('ZADD', endpoint_key, created_score, id) end
redis.call('SADD', event_key, id)
redis.call('EXPIRE', event_key, ttl)
redis.call('ZADD', archivable_key, now, id)
return 1
