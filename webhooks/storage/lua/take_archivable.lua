-- Take up to `limit` finished deliveries for one archiver: first those whose earlier
-- taker's claim lapsed (it died between taking and forgetting them), then those
-- whose final attempt was recorded at or before due_before. Each is held in the
-- taken set until lease_until, so that exactly one archiver moves it at a time.
-- KEYS: archivable_key archiving_key
-- ARGV: now due_before lease_until limit
-- Returns: the delivery ids taken.
local taken = redis.call('ZRANGE', archiving_key, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
local room = tonumber(limit) - #taken
if room > 0 then
  local due = redis.call('ZRANGE', archivable_key, '-inf', due_before, 'BYSCORE', 'LIMIT', 0,
                         room)
  for _, id in ipairs(due) do
    redis.call('ZREM', archivable_key, id)
    table.insert(taken, id)
  end
end
for _, id in ipairs(taken) do redis.call('ZADD', archiving_key, lease_until, id) end
return taken
