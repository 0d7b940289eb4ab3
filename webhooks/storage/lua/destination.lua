-- The destination rules, as Lua functions the claim and record scripts share:
-- a concurrency limit and a circuit breaker per destination (an endpoint, or
-- host:port for bare URLs). webhooks/storage/destinations.py explains them and passes
-- their parameters; this file is where Redis applies them atomically.
--
-- Keys of one destination: `inflight` (zset of attempts in flight, scored by when
-- their lease ends), `breaker` (hash: failures, open_until, cooldown, probing,
-- probe_until, avg_ms, limit: the concurrency limit of the worker whose attempt last
-- left, left_at: when an attempt last left, answered_at: since when
-- the destination has kept no attempt hanging (an attempt left within `stalled`
-- seconds, or it had been idle that long), wake_at: the open_until that a run is
-- already scheduled to probe; rate_next: when the next attempt may start under the
-- rate limit; rate_free: the first start time no run has reserved yet), `waiting`
-- (zset of runs waiting for a slot or for the probe, oldest first), `paced` (zset
-- of runs that reserved a start time under the rate limit, by that time) and
-- `throttled` (zset of runs waiting for a reservation, oldest first).
--
-- Adaptive pacing keeps, in `breaker` too, the pace actually used when it is below the
-- configured limits: pace_limit (attempts in flight), pace_rate (attempts a second),
-- paced_at (when it was last lowered), and a count of successes (ok_sec, ok_n,
-- ok_prev) that gives a destination with no rate limit its first one.
--
-- The rate limit is a GCRA: rate_next moves on by SPACING/rate with each attempt let
-- in, so attempts start at least that far apart, however late or bunched their runs
-- arrive. SPACING is 5 % over 1/rate because what a receiver counts is arrivals:
-- an attempt whose worker wakes late (a loaded machine, a slow network) lands
-- closer to the next one, and exactly 1/rate apart then put rate + 3 in one of
-- its seconds (seen on a loaded 2-core machine at 20/s). A run that would wait longer than `hold` reserves the first free start
-- time (rate_free moves on by SPACING/rate) and is scheduled for it, exactly once; coming
-- back, it holds a reservation and does not queue again behind later arrivals.
-- A run due within `hold` is let in at once, and its worker waits for its start.
--
-- Runs set aside wait in `waiting`, not in the schedule: a destination's backlog then
-- costs no Celery message per wait. Whatever frees a slot (leave) or closes the
-- circuit wakes them; while the circuit is open, one run is scheduled at the reopening
-- to probe, and the rest wait for its result. A run lost from `waiting` (a worker died
-- mid-script, the key expired) still has its due mark: the backstop brings it back.

-- Open the circuit until now + its cooldown (the breaker's, else cooldown_default).
-- Returns open_until as stored, a string.
local function open_circuit(breaker, now, cooldown)
  local open_until = tostring(now + cooldown)
  redis.call('HSET', breaker, 'open_until', open_until, 'cooldown', tostring(cooldown))
  redis.call('HDEL', breaker, 'probing')
  redis.call('EXPIRE', breaker, '86400')
  return open_until
end

-- Admission at creation (create_deliveries.lua): a destination's first runs beyond a
-- bound out at once (in the broker or in flight) wait in `waiting` from the start,
-- their message kept in the destination's `admit` hash when the broker's list is in
-- this Redis. `admitted` holds the runs let out at creation and not claimed yet, by
-- when (the claim takes them out; one lost with its worker is let go after a bound).
-- Both keys are named as `waiting` is, with another last word (keys.py).
local function admission_keys(waiting)
  local base = string.sub(waiting, 1, -8)
  return base .. 'admit', base .. 'admitted'
end

-- Keep a run's message as it waits in `waiting`, for release to push onto queue_key.
local function keep(waiting, member, message, queue_key)
  local admit = admission_keys(waiting)
  redis.call('HSET', admit, member, message, 'q:' .. member, queue_key)
  redis.call('EXPIRE', admit, '86400')
end

-- Let a woken run out now: its kept first message straight onto the broker's list
-- (no promoter pass). Not counted in `admitted`: a slot freed for it, and the next
-- creation finds it in flight or, while runs still wait, queues behind them anyway.
-- Returns false when it has none: the caller schedules it.
local function release(waiting, member)
  local admit = admission_keys(waiting)
  local kept = redis.call('HMGET', admit, member, 'q:' .. member)
  if not kept[1] or not kept[2] then return false end
  redis.call('HDEL', admit, member, 'q:' .. member)
  redis.call('LPUSH', kept[2], kept[1])
  return true
end

-- Move up to `count` of the longest-waiting runs to the schedule, due at `at`
-- (`now`: true when `at` is now, and a run held back at its creation goes straight
-- to the broker instead). Returns how many it moved.
local function wake(waiting, scheduled, at, count, now)
  for woken = 0, count - 1 do
    local head = redis.call('ZPOPMIN', waiting)
    if not head[1] then return woken end
    if not (now and release(waiting, head[1])) then
      redis.call('ZADD', scheduled, at, head[1])
    end
  end
  return count
end

-- A run handed to a caller stays in the schedule this much later than now, so that a
-- reply lost on the way (Redis stalled, the connection cut) loses nothing: the
-- promoter publishes it then. The caller takes it out (Schedule.take_handed) first.
local HANDOFF_HOLD = 2

-- The longest-waiting run, due now: let out (wake; returns ''), or, with `handoff` naming
-- the caller's queue and its delivery routed to that queue (its `queue` field; none:
-- `default_queue`), scheduled HANDOFF_HOLD later and returned, for the caller's
-- process to take and run next without a message; with `claimed`, the caller claims it
-- in the same call, and it is not scheduled.
local function wake_one(waiting, scheduled, now, handoff, default_queue, delivery_template,
                        claimed)
  if handoff ~= '' then
    local member = redis.call('ZPOPMIN', waiting)[1]
    if not member then return '' end
    local id = string.match(member, '^(.*):%d+:%d+$')
    local queue = redis.call('HGET', string.format(delivery_template, id), 'queue')
    if not queue or queue == '' then queue = default_queue end
    if queue == handoff then
      -- Its kept message (admission) is not needed: no message goes out for it now,
      -- and should the caller never take it, the promoter publishes one.
      redis.call('HDEL', (admission_keys(waiting)), member, 'q:' .. member)
      -- Claimed by the caller at once (claimed), its claim's lease guards it instead.
      if not claimed then redis.call('ZADD', scheduled, tonumber(now) + HANDOFF_HOLD, member) end
      return member
    end
    -- Another queue's: its kept message to the broker, else the promoter routes it.
    if not release(waiting, member) then redis.call('ZADD', scheduled, now, member) end
    return ''
  end
  wake(waiting, scheduled, now, 1, true)
  return ''
end

-- The limits actually used: the configured ones, or the pace adaptive pacing set
-- below them. `rate` 0: no rate limit.
-- How much further apart than 1/rate attempts start (see the header).
local SPACING = 1.05

-- The breaker's `names` fields in one call, as a table by name (false: absent).
local function read_breaker(breaker, names)
  local values = redis.call('HMGET', breaker, unpack(names))
  local read = {}
  for i, name in ipairs(names) do read[name] = values[i] end
  return read
end

-- A destination's keys live a day (the breaker) or an hour (inflight) past their last
-- use, give or take this: their expiry is pushed on when the time a breaker field
-- keeps of the last push (false: none yet) is this far behind `now`, not on every
-- attempt (two Redis calls fewer per attempt).
local KEEP_EVERY = 60

local function kept(at, now)
  return tonumber(now) - tonumber(at or '0') >= KEEP_EVERY
end

-- pace_limits: with pace_limit and pace_rate as the breaker holds them (false: none), when
-- the caller has read them already.
local function pace_limits(limit, rate, pace_limit, pace_rate)
  if pace_limit then limit = math.min(limit, math.max(1, math.floor(tonumber(pace_limit)))) end
  if pace_rate then
    local paced_rate = tonumber(pace_rate)
    if rate <= 0 or paced_rate < rate then rate = paced_rate end
  end
  -- Slower than one a day is enforced as one a day: a start reserved years ahead
  -- would be past any date a record can hold.
  if rate > 0 and rate < 1 / 86400 then rate = 1 / 86400 end
  return limit, rate
end

local function effective(breaker, limit, rate)
  local pace = redis.call('HMGET', breaker, 'pace_limit', 'pace_rate')
  return pace_limits(limit, rate, pace[1], pace[2])
end

-- Reserve starts for the longest-throttled runs, up to `horizon` seconds ahead, and
-- schedule each for its start: the reservations ahead stay short, so that a change
-- of rate (adaptive pacing's) holds for the backlog within `horizon`. Without a
-- rate any more, every throttled run is due now. Returns how many it scheduled.
local function pump(breaker, throttled, paced, scheduled, now, rate, horizon)
  local moved = 0
  if rate <= 0 then
    for _, member in ipairs(redis.call('ZRANGE', throttled, 0, -1)) do
      redis.call('ZADD', scheduled, now, member)
      moved = moved + 1
    end
    redis.call('DEL', throttled)
    return moved
  end
  local f = redis.call('HMGET', breaker, 'rate_next', 'rate_free')
  local free = math.max(tonumber(f[1] or '0'), tonumber(f[2] or '0'), now)
  while free <= now + horizon do
    local head = redis.call('ZPOPMIN', throttled)
    if not head[1] then break end
    redis.call('ZADD', scheduled, free, head[1])
    redis.call('ZADD', paced, free, head[1])
    free = free + SPACING / rate
    moved = moved + 1
  end
  if moved > 0 then
    redis.call('HSET', breaker, 'rate_free', tostring(free))
    redis.call('EXPIRE', paced, '86400')
  end
  return moved
end

-- Let an attempt in, or say why not. Returns a flat list of named fields:
--   outcome  'ok' | 'probe' (the one attempt that tests an open circuit)
--            | 'busy' (at the limit: wait for a slot) | 'open' (circuit open)
--            | 'paced' (over the rate limit: come back at retry_at, a reserved start)
--            | 'throttled' (over the rate limit, its reservations `horizon` ahead:
--              wait in `throttled`, about until retry_at)
--   retry_at (open, paced, throttled)  when to come back
--   start_at (ok)  when the attempt may start, if later than now (within `hold`)
--   avg_ms, waiting (busy)  the destination's attempt time, and the runs ahead
-- A full destination that has let no attempt go within `stalled` seconds for that
-- long answers nothing (a blackhole): its circuit opens then, rather than after
-- `failures_to_open` of its attempts have timed out one by one. `circuits`
-- is the open-circuits index ('' with metrics off), `name` the destination's.
-- `rate`: the endpoint's rate limit, attempts a second (0: none).
local function enter(inflight, breaker, waiting, now, lease_until, member, limit, stalled,
                     cooldown_default, circuits, name, paced, rate, hold, throttled,
                     horizon)
  -- Every field enter may read, in one call: nothing below writes one before reading it.
  local b = read_breaker(breaker, {'pace_limit', 'pace_rate', 'open_until', 'probing',
                                  'probe_until', 'answered_at', 'cooldown', 'rate_next',
                                  'rate_free', 'avg_ms', 'left_at', 'inflight_kept_at'})
  limit, rate = pace_limits(limit, rate, b.pace_limit, b.pace_rate)
  local open_until = tonumber(b.open_until or '0')
  if open_until > now then return {'outcome', 'open', 'retry_at', tostring(open_until)} end
  local probe = false
  if open_until > 0 then
    -- Half-open: one attempt probes the destination; the rest wait for its result.
    -- A probe whose worker died gives way once its lease ends.
    local probing = b.probing
    local probe_until = tonumber(b.probe_until or '0')
    if probing and probing ~= member and probe_until > now then
      return {'outcome', 'open', 'retry_at', tostring(now + 1)}
    end
    redis.call('HSET', breaker, 'probing', member, 'probe_until', lease_until)
    probe = true
  end
  redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now)
  local count = redis.call('ZCARD', inflight)
  local full = not probe and count >= limit
  if full then
    local answered = tonumber(b.answered_at or now)
    if answered <= now - stalled then
      local cooldown = tonumber(b.cooldown or cooldown_default)
      local opened = open_circuit(breaker, now, cooldown)
      if circuits ~= '' then redis.call('ZADD', circuits, opened, name) end
      return {'outcome', 'open', 'retry_at', opened}
    end
  end
  local start = now
  if rate > 0 and not probe then
    local interval = SPACING / rate
    local reserved = redis.call('ZSCORE', paced, member)
    local next_start = tonumber(b.rate_next or '0')
    local free = tonumber(b.rate_free or '0')
    start = math.max(next_start, now)
    -- A newcomer queues behind the start times reserved already.
    if not reserved then start = math.max(start, free) end
    -- Too far off to wait for in a worker, or due soon but every slot is taken
    -- (the run would hold up the queue of slots): reserve the start, come back then.
    if start > now + hold or (full and start > now and not reserved) then
      if not reserved then
        -- Reservations reach `horizon` ahead; later runs queue in `throttled`, and
        -- get theirs as time moves on (pump).
        local queued = redis.call('ZCARD', throttled)
        if queued > 0 or start > now + horizon then
          return {'outcome', 'throttled', 'retry_at', tostring(start + queued * interval)}
        end
        redis.call('HSET', breaker, 'rate_free', tostring(start + interval))
        redis.call('ZREMRANGEBYSCORE', paced, '-inf', now - 3600)
      end
      redis.call('ZADD', paced, start, member)
      redis.call('EXPIRE', paced, '86400')
      redis.call('EXPIRE', breaker, '86400')
      return {'outcome', 'paced', 'retry_at', tostring(start)}
    end
    if not full then
      if reserved then redis.call('ZREM', paced, member) end
      local after = start + interval
      redis.call('HSET', breaker, 'rate_next', tostring(after),
                 'rate_free', tostring(math.max(free, after)))
      redis.call('EXPIRE', breaker, '86400')
    end
  end
  if full then
    return {'outcome', 'busy', 'avg_ms', b.avg_ms or '100',
            'waiting', tostring(redis.call('ZCARD', waiting))}
  end
  if redis.call('ZADD', inflight, lease_until, member) == 1 and count == 0 then
    -- Idle, not just emptied by attempts that all timed out at once: a fresh start.
    local left = tonumber(b.left_at or '0')
    if left <= now - stalled then redis.call('HSET', breaker, 'answered_at', tostring(now)) end
  end
  -- An empty set is deleted, so one entered at count 0 is new, with no expiry yet;
  -- one in use has its expiry pushed on at most once a minute (inflight_kept_at).
  if count == 0 then
    redis.call('EXPIRE', inflight, '3600')
  elseif kept(b.inflight_kept_at, now) then
    redis.call('EXPIRE', inflight, '3600')
    -- Noted in a breaker that leave wrote (and gave an expiry), never in a new one.
    if b.left_at then redis.call('HSET', breaker, 'inflight_kept_at', tostring(now)) end
  end
  if probe then return {'outcome', 'probe'} end
  if start > now then return {'outcome', 'ok', 'start_at', tostring(start)} end
  return {'outcome', 'ok'}
end

-- After an attempt: leave the destination, move the circuit breaker, and wake what
-- waits there: the longest-waiting run while the circuit is closed, as many as there
-- are free slots when a probe closes it, and none while it is open but the one run
-- scheduled to probe at the reopening. The attempt's duration is kept as a moving
-- average, to pace waiting runs. Returns the time the circuit is open until (0 when
-- closed, or when it was open already and this attempt did not reopen it), and
-- whether a success cleared a breaker that had counted failures, or found none at
-- all (it expired: the circuit may have been open either way, and only then is the
-- open-circuits index touched). `read`: the breaker's LEAVE_FIELDS as the caller read
-- them (read_breaker) in the same call, with nothing since writing one; nil: leave
-- reads them. Also returns the run it handed the caller (`handoff`: wake_one), or ''.
local LEAVE_FIELDS = {'avg_ms', 'failures', 'open_until', 'cooldown', 'probing',
                      'probe_until', 'wake_at', 'kept_at'}
local function leave(inflight, breaker, waiting, scheduled, member, succeeded, now,
                     failures_to_open, cooldown_default, max_cooldown, duration, limit,
                     stalled, read, handoff, default_queue, delivery_template, claimed)
  redis.call('ZREM', inflight, member)
  read = read or read_breaker(breaker, LEAVE_FIELDS)
  local known = read.avg_ms
  local avg = tonumber(known or duration)
  local average = tostring(avg * 0.8 + tonumber(duration) * 0.2)
  -- limit: the workers' concurrency limit, for admission at creation (the producer's
  -- settings may say otherwise).
  local written = {'avg_ms', average, 'left_at', now, 'limit', limit}
  if succeeded == '1' or tonumber(duration) < tonumber(stalled) * 1000 then
    table.insert(written, 'answered_at')
    table.insert(written, now)
  end
  local keep = kept(read.kept_at, now)
  if keep then
    table.insert(written, 'kept_at')
    table.insert(written, now)
  end
  redis.call('HSET', breaker, unpack(written))
  if keep then redis.call('EXPIRE', breaker, '86400') end
  if succeeded == '1' then
    local was_open = read.open_until ~= false
    local cleared = 0
    -- The fast path, a success at a healthy destination, has none of them to clear.
    if read.failures or read.open_until or read.cooldown or read.probing or read.probe_until
        or read.wake_at then
      cleared = redis.call('HDEL', breaker, 'failures', 'open_until', 'cooldown', 'probing',
                           'probe_until', 'wake_at')
    end
    if was_open then
      wake(waiting, scheduled, now, math.max(1, tonumber(limit) - redis.call('ZCARD', inflight)),
           true)
      return 0, true, ''
    end
    return 0, cleared > 0 or not known, wake_one(waiting, scheduled, now, handoff, default_queue,
                                                delivery_template, claimed)
  end
  local failures = redis.call('HINCRBY', breaker, 'failures', '1')
  local probing = redis.call('HGET', breaker, 'probing')
  local cooldown = tonumber(redis.call('HGET', breaker, 'cooldown') or cooldown_default)
  if probing == member then
    cooldown = math.min(cooldown * 2, tonumber(max_cooldown))  -- the probe failed: wait longer
  elseif failures < tonumber(failures_to_open) then
    -- Open already (its attempts in flight stalled): the probe wakes the rest.
    local open_until = tonumber(redis.call('HGET', breaker, 'open_until') or '0')
    if open_until <= tonumber(now) then
      return 0, false, wake_one(waiting, scheduled, now, handoff, default_queue,
                                delivery_template, claimed)
    end
    return 0, false, ''
  end
  local open_until = open_circuit(breaker, tonumber(now), cooldown)
  -- Marked only when a run was there to wake: the next run set aside is the probe then.
  if redis.call('HGET', breaker, 'wake_at') ~= open_until
      and wake(waiting, scheduled, open_until, 1) > 0 then
    redis.call('HSET', breaker, 'wake_at', open_until)
  end
  return open_until, false, ''
end

-- Successes over about the last second, from the per-second count adapt keeps: the
-- current second's and the part of the one before that the last second still covers.
local function got_through(second, count, before, now)
  second = tonumber(second or '0')
  if math.floor(now) == second then
    return tonumber(count or '0') + tonumber(before or '0') * (1 - (now - second))
  elseif math.floor(now) == second + 1 then
    return tonumber(count or '0') * (1 - (now - math.floor(now)))
  end
  return 0
end

-- Adaptive pacing, after an attempt and before leave (which moves avg_ms on): lower
-- the destination's pace on a sign of strain, raise it again on a success. Strain is
-- `pushback` (a 429 or 503, a Retry-After, a timeout) or a duration well above the
-- moving average. Lowering is multiplicative (by `decrease`, down to a floor of one
-- in flight and `rate_floor` a second) and happens once per pace: an attempt that
-- started before the last lowering says nothing of the new pace. A destination with
-- no rate limit gets one then, from its successes over the last second. Raising is
-- additive: each success adds 1/pace, about one attempt a second (and one in flight)
-- per second of successes, until the pace is back at the configured limits and is
-- lifted (with no rate limit: at `rate_ceiling`, or once the traffic is well below
-- the pace, which then holds nothing back). A Retry-After also holds every start off
-- until then (at most `pause_max`). With `adaptive` off, any pace left is lifted.
-- Returns 1 when it lowered the pace, and whether it changed pace_limit or pace_rate.
-- `read`: the breaker's ADAPT_FIELDS as the caller read them (read_breaker) in the same
-- call, with nothing since writing one; nil: adapt reads them.
local ADAPT_FIELDS = {'pace_limit', 'pace_rate', 'paced_at', 'avg_ms', 'ok_sec', 'ok_n',
                      'ok_prev', 'rate_next'}
local function adapt(breaker, now, duration, succeeded, pushback, retry_after, adaptive,
                     limit, rate, index, name, decrease, rate_floor, rate_ceiling, pause_max,
                     slow_factor, slow_margin_ms, read)
  read = read or read_breaker(breaker, ADAPT_FIELDS)
  if adaptive ~= '1' then
    if (read.pace_limit or read.pace_rate or read.paced_at)
        and redis.call('HDEL', breaker, 'pace_limit', 'pace_rate', 'paced_at') > 0 then
      if index ~= '' then redis.call('ZREM', index, name) end
      return 0, true
    end
    return 0, false
  end
  now, duration, limit, rate = tonumber(now), tonumber(duration), tonumber(limit), tonumber(rate)
  local f = {read.pace_limit, read.pace_rate, read.paced_at, read.avg_ms, read.ok_sec,
             read.ok_n, read.ok_prev}
  local pace_limit, pace_rate = tonumber(f[1] or limit), tonumber(f[2] or '0')
  local avg = tonumber(f[4] or '0')
  local slow = avg > 0 and duration > math.max(avg * tonumber(slow_factor),
                                               avg + tonumber(slow_margin_ms))
  if pushback == '1' or slow then
    if tonumber(retry_after) > 0 then
      local resume = tostring(now + math.min(tonumber(retry_after), tonumber(pause_max)))
      for _, field in ipairs({'rate_next', 'rate_free'}) do
        if tonumber(redis.call('HGET', breaker, field) or '0') < tonumber(resume) then
          redis.call('HSET', breaker, field, resume)
        end
      end
    end
    if now - duration / 1000 < tonumber(f[3] or '0') then return 0, false end
    local from = pace_rate
    if from <= 0 then
      -- Unpaced so far: start from what got through over the last second.
      from = got_through(f[5], f[6], f[7], now)
      if rate > 0 and (from <= 0 or from > rate) then from = rate end
    end
    local lowered_rate = math.max(tonumber(rate_floor), from * tonumber(decrease))
    local lowered_limit = math.max(1, pace_limit * tonumber(decrease))
    redis.call('HSET', breaker, 'pace_limit', tostring(lowered_limit),
               'pace_rate', tostring(lowered_rate), 'paced_at', tostring(now))
    if index ~= '' then redis.call('ZADD', index, now, name) end
    return 1, true
  end
  if succeeded ~= '1' then return 0, false end
  local second = math.floor(now)
  if second == tonumber(f[5] or '0') then
    redis.call('HINCRBY', breaker, 'ok_n', '1')
  else
    local before = '0'
    if second == tonumber(f[5] or '0') + 1 then before = f[6] or '0' end
    redis.call('HSET', breaker, 'ok_sec', tostring(second), 'ok_n', '1', 'ok_prev', before)
  end
  if not f[1] and not f[2] then return 0, false end
  pace_limit = math.min(limit, pace_limit + 1 / pace_limit)
  local ceiling = rate
  if ceiling <= 0 then ceiling = tonumber(rate_ceiling) end
  -- Raised only while it holds attempts back: a pace nobody reaches proves nothing.
  local next_start = tonumber(read.rate_next or '0')
  local binding = pace_rate > 0 and next_start + 1 / pace_rate > now
  if binding then pace_rate = math.min(ceiling, pace_rate + 1 / pace_rate) end
  local idle = not binding and pace_rate > 2 * got_through(f[5], f[6], f[7], now)
  if pace_limit >= limit and (pace_rate <= 0 or pace_rate >= ceiling or idle) then
    redis.call('HDEL', breaker, 'pace_limit', 'pace_rate', 'paced_at')
    if index ~= '' then redis.call('ZREM', index, name) end
  else
    redis.call('HSET', breaker, 'pace_limit', tostring(pace_limit), 'pace_rate',
               tostring(pace_rate))
  end
  return 0, true
end
