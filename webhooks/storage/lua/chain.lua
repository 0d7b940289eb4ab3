-- Ordered delivery, shared by the scripts that take a delivery out of its ordering
-- chain (record_attempt and set_status when it becomes final, unchain for redeliver,
-- skip and deletion). A chain (keys.py ordering_chain) lists the unfinished
-- deliveries of one endpoint and one ordering key in publish order; the record's
-- 'ordering_chain' names it, and every delivery but the head has 'waiting_behind',
-- the id of the one before it, and no message, schedule entry or due mark: it costs
-- nothing while it waits.
-- unchain: take the delivery out of its chain (nothing if it is in none). One leaving
-- from the middle (skipped or redelivered while it waited) hands its place to its
-- follower; the head leaving wakes the next (wake_next).
-- wake_next: in the same call, the next's first message, which create_deliveries
-- kept in its record when the broker's list is in this Redis, is pushed there (no
-- promoter pass); else its run is scheduled now, for the promoter. Its due mark is
-- set, so the backstop finds it should the message be lost. A next one that is gone
-- or finished meanwhile is passed over.
-- delivery_template, attempts_template: keys.py templates of the neighbours' keys.
local function wake_next(chain, now, scheduled_key, due_key, delivery_template,
                         attempts_template)
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

-- chain: the chain's key when the caller knows it (the record may be gone; false: the
-- caller read the record and it names none), else nil.
local function unchain(delivery_key, delivery_id, now, scheduled_key, due_key,
                       delivery_template, attempts_template, chain)
  if chain == nil then chain = redis.call('HGET', delivery_key, 'ordering_chain') end
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
  wake_next(chain, now, scheduled_key, due_key, delivery_template, attempts_template)
end

-- heal: a chain whose head is gone (its record expired while its key was held longer
-- than the retention, or was lost) or final would hold its key for ever: its head is
-- dropped and the next woken. Called before a delivery joins the chain.
local function heal(chain, now, scheduled_key, due_key, delivery_template, attempts_template)
  local head = redis.call('LINDEX', chain, 0)
  if not head then return end
  local status = redis.call('HGET', string.format(delivery_template, head), 'status')
  if status and status ~= 'delivered' and status ~= 'retries_exhausted' then return end
  redis.call('LPOP', chain)
  wake_next(chain, now, scheduled_key, due_key, delivery_template, attempts_template)
end
