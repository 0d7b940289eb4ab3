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

-- Each item's table is made with every field it may get (false: none yet), so that Lua
-- sizes it once: a table that grows is rehashed at each power of two, and this loop
-- runs once per delivery (callgrind on redis-server 7.0: a batch's Lua work was most
-- of its Redis CPU).
local items = {}
local i, last = count + 1, #rest
while i <= last do
  local id, first_field, last_field = rest[i], i + 8, i + 7 + 2 * tonumber(rest[i + 7])
  local chain, dest, event_id = false, false, false
  for f = first_field, last_field, 2 do
    local name = rest[f]
    if name == 'ordering_chain' then chain = rest[f + 1]
    elseif name == 'destination' then dest = rest[f + 1]
    elseif name == 'event_id' then event_id = rest[f + 1] end
  end
  items[#items + 1] = {
    id = id, endpoint_id = rest[i + 1], body = bodies[tonumber(rest[i + 2])],
    score = rest[i + 3], due = rest[i + 4], message = rest[i + 5], park = rest[i + 6],
    first_field = first_field, last_field = last_field,
    key = string.format(delivery_template, id), member = id .. ':0:0', chain = chain,
    destination_field = dest, event_id = event_id,
    exists = false, behind = false, destination = false, held = false}
  i = last_field + 1
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

-- A sorted set of up to 128 members (zset-max-listpack-entries) is one flat list, in
-- which Redis finds a new member's place by reading the score of each member before
-- it (a strtod each), so that a batch added in creation order to a new or small set
-- cost it 128 * 64 score reads (a tenth of the Redis CPU of a delivery created in a
-- batch of 300). Added highest first (by score, then member), each new member goes at
-- the head, after one read. Sorted in place, once: `created` goes to several indexes.
local function highest_first(scored)
  if scored.sorted or #scored <= 2 then return end
  scored.sorted = true
  local n, score, one_score = #scored / 2, scored[1], true
  for i = 3, #scored, 2 do
    if scored[i] ~= score then one_score = false break end
  end
  if one_score then
    -- A batch's usual case (created at one moment): by member alone, Lua's own sort.
    local members = {}
    for i = 1, n do members[i] = scored[2 * i] end
    table.sort(members)
    for i = 1, n do scored[2 * i] = members[n + 1 - i] end
    return
  end
  local order, value = {}, {}
  for i = 1, n do
    order[i] = i
    value[i] = tonumber(scored[2 * i - 1])
  end
  table.sort(order, function(a, b)
    if value[a] ~= value[b] then return value[a] > value[b] end
    return scored[2 * a] > scored[2 * b]
  end)
  local copy = {}
  for i = 1, #scored do copy[i] = scored[i] end
  for i, from in ipairs(order) do
    scored[2 * i - 1], scored[2 * i] = copy[2 * from - 1], copy[2 * from]
  end
end

local function add_all(key, scored)
  highest_first(scored)
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
    if not item.exists and not item.behind and item.park == ''
        and item.destination_field and item.destination_field ~= '' then
      item.destination = item.destination_field
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
        local n = #d.let_out
        d.let_out[n + 1], d.let_out[n + 2] = now, item.member
      else
        d.queued = d.queued + 1
        item.held = true
        -- Creation order within the batch; the wake pops the oldest first.
        local n = #d.held
        d.held[n + 1], d.held[n + 2] = tostring(at + n * 1e-7), item.member
        item.due = tostring(at + d.queued * d.avg / 1000 / d.slots)
      end
      -- A held run's message kept, for the wake to push. One let out is not: should
      -- it find the destination full, the process that took its message keeps it
      -- then (wait_for_slot.lua), at no cost to the runs that do not.
      if item.held and item.message ~= '' then
        local n = #d.kept
        d.kept[n + 1], d.kept[n + 2] = item.member, item.message
        d.kept[n + 3], d.kept[n + 4] = 'q:' .. item.member, queue_key
      end
    end
  end
end

-- The messages first: when Redis refuses them (an ACL denying LPUSH), nothing
-- else has been written yet.
local messages = {}
for _, item in ipairs(items) do
  if not item.exists and not item.behind and not item.held and item.message ~= '' then
    messages[#messages + 1] = item.message
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
    redis.call('EXPIRE', d.admitted, '86400')
  end
  if #d.held > 0 then
    add_all(d.waiting, d.held)
    redis.call('EXPIRE', d.waiting, '86400')
  end
  for first = 1, #d.kept, 1000 do
    redis.call('HSET', d.admit, unpack(d.kept, first, math.min(first + 999, #d.kept)))
  end
  if #d.kept > 0 then redis.call('EXPIRE', d.admit, '86400') end
end

local created, due, parked, by_endpoint, waiting = {}, {}, {}, {}, {'waiting'}
local ttl_seconds = tonumber(ttl)
for _, item in ipairs(items) do
  if not item.exists then
    if item.behind then
      local hash = {'body', item.body}
      for f = item.first_field, item.last_field do hash[#hash + 1] = rest[f] end
      hash[#hash + 1], hash[#hash + 2] = 'waiting_behind', item.behind
      waiting[#waiting + 1] = item.id
      if item.message ~= '' then
        for _, value in ipairs({'wake_message', item.message, 'wake_queue', queue_key}) do
          hash[#hash + 1] = value
        end
      end
      redis.call('HSET', item.key, unpack(hash))
    else
      redis.call('HSET', item.key, 'body', item.body,
                 unpack(rest, item.first_field, item.last_field))
    end
    redis.call('EXPIRE', item.key, ttl)
    if item.chain then redis.call('RPUSH', item.chain, item.id) end
    if item.event_id then
      local event_key = string.format(event_template, redis.sha1hex(item.event_id))
      redis.call('SADD', event_key, item.id)
      -- Only ever later (no EXPIRE GT: Redis 6.2 has none).
      if redis.call('TTL', event_key) < ttl_seconds then redis.call('EXPIRE', event_key, ttl) end
    end
    if item.held then waiting[#waiting + 1] = item.id end
    local n = #created
    created[n + 1], created[n + 2] = item.score, item.id
    if not item.behind then
      n = #due
      due[n + 1], due[n + 2] = item.due, item.id
    end
    if item.park ~= '' and not item.behind then
      n = #parked
      parked[n + 1], parked[n + 2] = item.park, item.member
    end
    if item.endpoint_id ~= '' then
      local scored = by_endpoint[item.endpoint_id]
      if not scored then
        scored = {}
        by_endpoint[item.endpoint_id] = scored
      end
      n = #scored
      scored[n + 1], scored[n + 2] = item.score, item.id
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
