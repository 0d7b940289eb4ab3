-- Create deliveries, with their first task messages, all or nothing; idempotent.
-- A delivery's id follows from its event id and destination, so a repeated call (a
-- producer retrying after an error whose outcome it could not know) finds its
-- deliveries already there and creates nothing more. One whose stored body differs
-- from the new one is a conflict (an event id reused for another event): then
-- nothing at all is written. So is a tenant that does not exist (it was deleted).
-- KEYS: due_key scheduled_key queue_key tenant_key metrics_key *index_keys
-- ARGV: cutoff ttl delivery_template endpoint_template event_template idempotency_template first_bucket last_bucket now window index_count body_count attempts_template admit_bound admit_hold limit inflight_template waiting_template breaker_template *rest
-- Uses: chain destination
-- rest: body_count bodies, then one group per delivery:
--   delivery_id endpoint_id body_number score due_score message park_score field_count
--   field value ... (field_count pairs)
-- message: the task message to push to queue_key ('' for none: the caller publishes);
-- park_score: park the first run until then instead ('' for none). score: the
-- delivery's place in the indexes (its creation time).
-- tenant_key: the deliveries' tenant ('' for none), which must exist and not be in
-- the middle of its deletion.
-- metrics_key: the counters hash, whose 'created' counts the new deliveries ('' for
-- metrics off).
-- index_keys: the first index_count are the indexes the new deliveries enter; all of
-- them are trimmed of entries older than cutoff (their records have expired).
-- event_template: the key of an event's deliveries (by the SHA-1 of its id), which
-- each new delivery enters.
-- idempotency_template, first_bucket, last_bucket: the markers of archived
-- deliveries (keys.py idempotency) to look in when a record is not there, buckets
-- first_bucket to last_bucket ('' for none: no archive); a marker counts for
-- `window` seconds after its delivery's creation, then it is as if absent.
-- A delivery with an 'ordering_chain' field joins the end of that chain (chain.lua):
-- one with a delivery before it gets 'waiting_behind' and no message, park or due
-- mark (the one before wakes it), so that chain order is creation order. Its message
-- is kept in its record ('wake_message', with 'wake_queue'), for the wake to push.
-- A chain whose head is gone is healed first (chain.lua heal; attempts_template as
-- chain.lua takes it).
-- admit_bound: admission at creation ('0': none), `limit` (the producer's concurrency
-- limit) plus a margin. A destination gets at most its limit as its workers last
-- applied it (the breaker's, else `limit`) plus that margin runs out at once
-- (attempts in flight, and first runs let out at creation and
-- not claimed yet, those older than admit_hold seconds not counted: lost with a
-- worker); a new delivery's first run over it, or behind runs already waiting there,
-- waits in the destination's `waiting` from the start (destination.lua), due when
-- the queue ahead should have drained (limit at a time, at its average attempt
-- time), its message kept for the wake to push. Its id is returned as 'waiting':
-- a caller that publishes itself publishes nothing for it; the promoter does.
-- inflight_template, waiting_template, breaker_template: keys.py templates.
-- Returns: {'conflict', delivery_id} or {'no_tenant'} and writes nothing, or
-- {'existing', id, id, ..., 'waiting', id, id, ...}: the deliveries that were there
-- already (an earlier call's), then the new ones that wait behind another.
if tenant_key ~= '' and (redis.call('HEXISTS', tenant_key, 'id') == 0
    or redis.call('HEXISTS', tenant_key, 'deleting') == 1) then
  return {'no_tenant'}
end
local bodies = {}
local count = tonumber(body_count)
for i = 1, count do bodies[i] = rest[i] end

local items = {}
local i = count + 1
while i <= #rest do
  local item = {id = rest[i], endpoint_id = rest[i + 1], body = bodies[tonumber(rest[i + 2])],
                score = rest[i + 3], due = rest[i + 4], message = rest[i + 5],
                park = rest[i + 6], fields = tonumber(rest[i + 7]), first_field = i + 8}
  item.key = string.format(delivery_template, item.id)
  for f = i + 8, i + 7 + 2 * item.fields, 2 do
    if rest[f] == 'ordering_chain' then item.chain = rest[f + 1] end
  end
  table.insert(items, item)
  i = i + 8 + 2 * item.fields
end

-- An archived delivery's marker: 'same', 'other' (another body) or nil (none, or
-- one older than the window).
local function marked(id, body)
  if first_bucket == '' then return nil end
  for bucket = tonumber(first_bucket), tonumber(last_bucket) do
    local marker = redis.call('HGET', string.format(idempotency_template, bucket), id)
    if marker then
      local digest, created = string.match(marker, '^(%x+):(%d+)$')
      if created and tonumber(now) - tonumber(created) < tonumber(window) then
        if string.sub(redis.sha1hex(body), 1, #digest) == digest then return 'same' end
        return 'other'
      end
    end
  end
  return nil
end

-- First look, then write: a conflict must leave nothing behind.
local existing = {'existing'}
local seen = {}
for _, item in ipairs(items) do
  local stored = seen[item.id] or redis.call('HGET', item.key, 'body')
  local same = stored == item.body
  if not stored then
    local mark = marked(item.id, item.body)
    stored, same = mark, mark == 'same'
  end
  if stored then
    if not same then return {'conflict', item.id} end
    item.exists = true
    table.insert(existing, item.id)
  end
  seen[item.id] = item.body
end

-- Each new ordered delivery goes behind the last of its chain, this batch's included.
local tails, healed = {}, {}
for _, item in ipairs(items) do
  if not item.exists and item.chain and not healed[item.chain] then
    healed[item.chain] = true
    heal(item.chain, now, scheduled_key, due_key, delivery_template, attempts_template)
  end
end
for _, item in ipairs(items) do
  if not item.exists and item.chain then
    local tail = tails[item.chain]
    if tail == nil then tail = redis.call('LINDEX', item.chain, -1) end
    if tail then item.behind = tail end
    tails[item.chain] = item.id
  end
end

local function add_all(key, scored)
  -- ZADD in slices, to stay within Lua's limit on unpacked arguments.
  for first = 1, #scored, 2000 do
    redis.call('ZADD', key, unpack(scored, first, math.min(first + 1999, #scored)))
  end
end

-- Admission: which first runs go out now, and which wait at their destination.
-- Decided before anything is written; written after the messages.
local bound = tonumber(admit_bound)
local destinations = {}
if bound > 0 then
  local at = tonumber(now)
  for _, item in ipairs(items) do
    if not item.exists and not item.behind and item.park == '' then
      for f = item.first_field, item.first_field + 2 * item.fields - 1, 2 do
        if rest[f] == 'destination' and rest[f + 1] ~= '' then item.destination = rest[f + 1] end
      end
    end
    local name = item.destination
    if name then
      local d = destinations[name]
      if not d then
        local waiting = string.format(waiting_template, name)
        local admit, admitted = admission_keys(waiting)
        local out = redis.call('ZCOUNT', string.format(inflight_template, name), '(' .. now,
                               '+inf')
                    + redis.call('ZCOUNT', admitted, '(' .. tostring(at - tonumber(admit_hold)),
                                 '+inf')
        local breaker_key = string.format(breaker_template, name)
        local breaker = redis.call('HMGET', breaker_key, 'avg_ms', 'open_until', 'limit')
        local avg = breaker[1]
        -- The limit the workers last applied there, as adaptive pacing holds it now.
        local slots = effective(breaker_key, tonumber(breaker[3] or limit), 0)
        d = {waiting = waiting, admit = admit, admitted = admitted, out = out,
             bound = slots + bound - tonumber(limit), slots = slots,
             queued = redis.call('ZCARD', waiting), avg = tonumber(avg or '100'),
             let_out = {}, held = {}, kept = {}, wake = 0}
        -- Places let go (runs lost with a worker, past admit_hold) while runs wait:
        -- nothing else would wake those, no attempt being there to leave. Not while
        -- the circuit is open: they wait for the probe's result.
        if d.queued > 0 and d.out < d.bound and not breaker[2] then
          d.wake = math.min(d.bound - d.out, d.queued)
          d.queued, d.out = d.queued - d.wake, d.out + d.wake
        end
        destinations[name] = d
      end
      if d.queued == 0 and d.out < d.bound then
        d.out = d.out + 1
        table.insert(d.let_out, now)
        table.insert(d.let_out, item.id .. ':0:0')
      else
        d.queued = d.queued + 1
        item.held = true
        -- Creation order within the batch; the wake pops the oldest first.
        table.insert(d.held, tostring(at + #d.held * 1e-7))
        table.insert(d.held, item.id .. ':0:0')
        item.due = tostring(at + d.queued * d.avg / 1000 / d.slots)
      end
      -- Its message kept, for the wake to push; one let out too (limit + margin at
      -- most): should it find the destination full, it waits, and is pushed again as a
      -- slot frees, not through the promoter.
      if item.message ~= '' then
        table.insert(d.kept, item.id .. ':0:0')
        table.insert(d.kept, item.message)
        table.insert(d.kept, 'q:' .. item.id .. ':0:0')
        table.insert(d.kept, queue_key)
      end
    end
  end
end

-- The messages first: when Redis refuses them (an ACL denying LPUSH), nothing
-- else has been written yet.
local messages = {}
for _, item in ipairs(items) do
  if not item.exists and not item.behind and not item.held and item.message ~= '' then
    table.insert(messages, item.message)
  end
end
for first = 1, #messages, 1000 do
  redis.call('LPUSH', queue_key, unpack(messages, first, math.min(first + 999, #messages)))
end
for _, d in pairs(destinations) do
  if d.wake > 0 then wake(d.waiting, scheduled_key, now, d.wake, true) end
  if #d.let_out > 0 then
    redis.call('ZREMRANGEBYSCORE', d.admitted, '-inf', tonumber(now) - tonumber(admit_hold))
    add_all(d.admitted, d.let_out)
    redis.call('EXPIRE', d.admitted, 86400)
  end
  if #d.held > 0 then
    add_all(d.waiting, d.held)
    redis.call('EXPIRE', d.waiting, 86400)
  end
  for first = 1, #d.kept, 1000 do
    redis.call('HSET', d.admit, unpack(d.kept, first, math.min(first + 999, #d.kept)))
  end
  if #d.kept > 0 then redis.call('EXPIRE', d.admit, 86400) end
end

local created, due, parked, by_endpoint, waiting = {}, {}, {}, {}, {'waiting'}
for _, item in ipairs(items) do
  if not item.exists then
    local hash = {'body', item.body}
    for f = item.first_field, item.first_field + 2 * item.fields - 1 do
      table.insert(hash, rest[f])
    end
    if item.behind then
      table.insert(hash, 'waiting_behind')
      table.insert(hash, item.behind)
      table.insert(waiting, item.id)
      if item.message ~= '' then
        for _, value in ipairs({'wake_message', item.message, 'wake_queue', queue_key}) do
          table.insert(hash, value)
        end
      end
    end
    redis.call('HSET', item.key, unpack(hash))
    redis.call('EXPIRE', item.key, ttl)
    if item.chain then redis.call('RPUSH', item.chain, item.id) end
    for f = item.first_field, item.first_field + 2 * item.fields - 1, 2 do
      if rest[f] == 'event_id' then
        local event_key = string.format(event_template, redis.sha1hex(rest[f + 1]))
        redis.call('SADD', event_key, item.id)
        -- Only ever later (no EXPIRE GT: Redis 6.2 has none).
        if redis.call('TTL', event_key) < tonumber(ttl) then
          redis.call('EXPIRE', event_key, ttl)
        end
      end
    end
    if item.held then table.insert(waiting, item.id) end
    table.insert(created, item.score)
    table.insert(created, item.id)
    if not item.behind then
      table.insert(due, item.due)
      table.insert(due, item.id)
    end
    if item.park ~= '' and not item.behind then
      table.insert(parked, item.park)
      table.insert(parked, item.id .. ':0:0')
    end
    if item.endpoint_id ~= '' then
      by_endpoint[item.endpoint_id] = by_endpoint[item.endpoint_id] or {}
      table.insert(by_endpoint[item.endpoint_id], item.score)
      table.insert(by_endpoint[item.endpoint_id], item.id)
    end
  end
end
for n = 1, tonumber(index_count) do add_all(index_keys[n], created) end
if metrics_key ~= '' and #created > 0 then
  redis.call('HINCRBY', metrics_key, 'created', #created / 2)
end
add_all(due_key, due)
add_all(scheduled_key, parked)
for endpoint_id, scored in pairs(by_endpoint) do
  local key = string.format(endpoint_template, endpoint_id)
  add_all(key, scored)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff)
end
-- Index entries of expired records go here, not in a sweeper process.
for _, key in ipairs(index_keys) do redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff) end
for _, id in ipairs(waiting) do table.insert(existing, id) end
return existing
