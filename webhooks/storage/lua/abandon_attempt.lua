-- Give up a claimed attempt that its worker stopped (it was terminated): its claim
-- and destination slot are released at once, with the longest-waiting run at the
-- destination let in, and the run is due again now, as if its claim had lapsed.
-- KEYS: delivery_key running_key scheduled_key
-- ARGV: member now inflight_template waiting_template
-- Uses: destination
-- Returns: 1 if the attempt was held, 0 if it was not (recorded or released already).
if not redis.call('ZSCORE', running_key, member) then return 0 end
redis.call('ZREM', running_key, member)
redis.call('ZADD', scheduled_key, now, member)
local destination = redis.call('HGET', delivery_key, 'destination') or ''
if destination ~= '' and
    redis.call('ZREM', string.format(inflight_template, destination), member) == 1 then
  wake(string.format(waiting_template, destination), scheduled_key, now, 1, true)
end
return 1
