-- Ordered delivery, shared by the scripts that take a delivery out of its ordering
-- chain (record_attempt and set_status when it becomes final, unchain for redeliver,
-- skip and deletion). A chain (keys.py ordering_chain) lists the unfinished
-- deliveries of one endpoint and one ordering key in publish order; the record's
-- 'ordering_chain' names it, and every delivery but the head has 'waiting_behind',
-- the id of the one before it, and no message, schedule entry or due mark: it costs
-- nothing while it waits.
-- unchain: take the delivery out of its chain (nothing if it is in none). The head
-- leaving wakes the next: its run is scheduled now and its due mark set, in this same
-- call, so the promoter publishes it and the backstop finds it should that be lost.
-- A next one that is gone or finished meanwhile is passed over. One leaving from the
-- middle (skipped or redelivered while it waited) hands its place to its follower.
-- The next's run is its first, whose message create_deliveries kept in its record
-- when the broker's list is in this Redis: pushed there, it costs no promoter pass.
-- delivery_template, attempts_template: keys.py templates of the neighbours' keys.
-- chain: the chain's key when the caller knows it (the record may be gone), else nil.
local function unchain(delivery_key, delivery_id, now, scheduled_key, due_key,
                       delivery_template, attempts_template, chain)
  chain = chain or redis.call('HGET', delivery_key, 'ordering_chain')
  if not chain then return end
  redis.call('HDEL', delivery_key, 'ordering_chain', 'waiting_behind', 'wake_message',
             'wake_queue')
  if redis.call('LINDEX', chain, 0) ~= delivery_id then
    local ids = redis.call('LRANGE', chain, 0, -1)
    for i, id in ipairs(ids) do
      if id == delivery_id then
        if ids[i + 1] and i > 1 then
          redis.call('HSET', string.format(delivery_template, ids[i + 1]), 'waiting_behind',
                     ids[i - 1])
        end
        break
      end
    end
    redis.call('LREM', chain, 1, delivery_id)
    return
  end
  redis.call('LPOP', chain)
  while true do
    local next_id = redis.call('LINDEX', chain, 0)
    if not next_id then return end
    local key = string.format(delivery_template, next_id)
    local f = redis.call('HMGET', key, 'status', 'cycle', 'cycle_offset', 'wake_message',
                         'wake_queue')
    if f[1] and f[1] ~= 'delivered' and f[1] ~= 'retries_exhausted' then
      local made = redis.call('LLEN', string.format(attempts_template, next_id))
      local retries = math.max(0, made - (tonumber(f[3] or '0') or 0))
      redis.call('HDEL', key, 'waiting_behind', 'wake_message', 'wake_queue')
      if f[4] and f[5] and retries == 0 then
        redis.call('LPUSH', f[5], f[4])
      else
        redis.call('ZADD', scheduled_key, 'NX', now,
                   next_id .. ':' .. (f[2] or '0') .. ':' .. tostring(retries))
      end
      redis.call('ZADD', due_key, now, next_id)
      return
    end
    redis.call('LPOP', chain)
    if f[1] then
      redis.call('HDEL', key, 'ordering_chain', 'waiting_behind', 'wake_message', 'wake_queue')
    end
  end
end
