-- Take up to `limit` finished deliveries for one archiver: first those whose earlier
-- taker's claim lapsed (it died between taking and forgetting them), then those
-- whose final attempt was recorded at or before due_before. Each is held in the
-- taken set until lease_until, so that exactly one archiver moves it at a time.
-- One no longer finished (redelivered) or gone (its tenant deleted) is let go of.
-- KEYS: archivable_key archiving_key
-- ARGV: now due_before lease_until limit delivery_template attempts_template
-- Returns: how many ids it took from the two sets, then per delivery still finished
-- its id, its record (as HGETALL gives it) and its attempts: the records in one
-- reply, which hiredis parses, instead of two commands a delivery through the
-- client (most of the archiver's own CPU when it did so).
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
local reply = {#taken}
for _, id in ipairs(taken) do
  local key = string.format(delivery_template, id)
  local status = redis.call('HGET', key, 'status')
  if status == 'delivered' or status == 'retries_exhausted' then
    redis.call('ZADD', archiving_key, lease_until, id)
    table.insert(reply, id)
    table.insert(reply, redis.call('HGETALL', key))
    table.insert(reply, redis.call('LRANGE', string.format(attempts_template, id), 0, -1))
  else
    redis.call('ZREM', archiving_key, id)
  end
end
return reply
