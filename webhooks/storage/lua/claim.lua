-- Claiming an attempt, shared by the scripts that do it: claim_attempt.lua, and
-- record_attempt.lua for the run its record hands the caller. Arguments and reply as
-- claim_attempt.lua's header names them (delivery_key, attempts_key and running_key
-- are its KEYS).
-- The scripts that use this have the destination keys' templates as constants
-- (scripts.py), each with its parts before and after the name.
local function destination_keys(name)
  return inflight_template_head .. name .. inflight_template_tail,
         breaker_template_head .. name .. breaker_template_tail,
         waiting_template_head .. name .. waiting_template_tail,
         paced_template_head .. name .. paced_template_tail,
         throttled_template_head .. name .. throttled_template_tail
end

local function claim(delivery_key, attempts_key, running_key, cycle, retries, now,
                     lease_until, member, endpoint_template, limit, stalled, cooldown,
                     circuits_key, hold, horizon)
  local f = redis.call('HMGET', delivery_key, 'url', 'endpoint_id', 'body', 'cycle',
                       'cycle_offset', 'status', 'destination', 'tenant_id', 'event_type',
                       'test', 'waiting_behind')
  local url, endpoint_id, body, stored_cycle, offset, status, destination, tenant_id =
    f[1], f[2] or '', f[3], tonumber(f[4] or '0') or 0, tonumber(f[5] or '0') or 0, f[6],
    f[7] or '', f[8] or ''
  if not url then return {'outcome', 'missing'} end
  -- Taken off the queue, whatever the outcome: its place among the runs let out at
  -- creation is free (create_deliveries.lua's admission).
  local inflight, breaker, waiting, paced, throttled
  if destination ~= '' then
    inflight, breaker, waiting, paced, throttled = destination_keys(destination)
    local _, admitted = admission_keys(waiting)
    redis.call('ZREM', admitted, member)
  end
  local number = offset + tonumber(retries) + 1
  -- A field that is empty is left out, and the attempt's number is the caller's to work
  -- out from the offset: each string of a reply costs Redis about 1,500 instructions,
  -- a tostring of a number 4,000.
  local reply, n = {'url', url}, 2
  if f[5] then reply[n + 1], reply[n + 2], n = 'cycle_offset', f[5], n + 2 end
  if tenant_id ~= '' then reply[n + 1], reply[n + 2], n = 'tenant_id', tenant_id, n + 2 end
  if endpoint_id ~= '' then
    reply[n + 1], reply[n + 2], n = 'endpoint_id', endpoint_id, n + 2
  end
  if f[9] and f[9] ~= '' then reply[n + 1], reply[n + 2], n = 'event_type', f[9], n + 2 end
  if destination ~= '' then
    reply[n + 1], reply[n + 2], n = 'destination', destination, n + 2
  end
  if f[10] and f[10] ~= '' then reply[n + 1], reply[n + 2], n = 'test', f[10], n + 2 end
  local function answer(outcome)
    local n = #reply
    reply[n + 1], reply[n + 2] = 'outcome', outcome
    return reply
  end
  if stored_cycle ~= tonumber(cycle) then return answer('stale') end
  if status == 'delivered' or status == 'retries_exhausted' then return answer('final') end
  if f[11] then return answer('behind') end
  if redis.call('LLEN', attempts_key) >= number then return answer('recorded') end
  -- Not held: claimed in one call. Held: busy while that claim's lease runs, else
  -- (its worker died) taken over.
  if redis.call('ZADD', running_key, 'NX', lease_until, member) == 0 then
    if tonumber(redis.call('ZSCORE', running_key, member)) > tonumber(now) then
      return answer('busy')
    end
    redis.call('ZADD', running_key, lease_until, member)
  end
  reply[n + 1], reply[n + 2] = 'body', body
  local rate = 0
  if endpoint_id ~= '' then
    local endpoint = redis.call('GET', string.format(endpoint_template, endpoint_id)) or ''
    reply[n + 3], reply[n + 4] = 'endpoint', endpoint
    if endpoint == '' then return answer('claimed') end
    local decoded = cjson.decode(endpoint)
    if not decoded['enabled'] then return answer('claimed') end
    -- JSON null decodes to a sentinel, not nil: only a number is a rate limit.
    if type(decoded['rate_limit']) == 'number' then rate = decoded['rate_limit'] end
  end
  if destination ~= '' then
    local entry = enter(inflight, breaker, waiting, tonumber(now), lease_until, member,
                        tonumber(limit), tonumber(stalled), tonumber(cooldown), circuits_key,
                        destination, paced, rate, tonumber(hold), throttled,
                        tonumber(horizon))
    -- What entering said, as enter's own list of named fields (not each field renamed:
    -- a string made per field is Lua's dearest step here).
    local n = #reply
    reply[n + 1], reply[n + 2] = 'entry', entry
    return answer('claimed')
  end
  return answer('claimed')
end
