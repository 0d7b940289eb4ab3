-- Record an attempt and everything it leads to, atomically: append it, move the
-- delivery to its new status (and status indexes), release the attempt's claim,
-- park the next run when it waits long, set the overdue mark, refresh the
-- retention, and leave the destination (moving its circuit breaker). Safe to
-- repeat: an attempt already on record (a retried call whose answer was lost)
-- changes nothing.
-- KEYS: delivery_key attempts_key running_key scheduled_key due_key metrics_key circuits_key archive_key activity_key tenant_activity_key *index_keys
-- ARGV: delivery_id number attempt status updated_at next_attempt_at stop_reason member next_member park_at due_at updated_score ttl destination handoff default_queue succeeded failures_to_open cooldown max_cooldown duration_ms limit stalled inflight_template breaker_template waiting_template pushback retry_after adaptive rate_limit paced_index paced_template throttled_template horizon decrease rate_floor rate_ceiling pause_max slow_factor slow_margin_ms index_count attempt_counter duration_bucket duration_seconds event_template attempt_kind outcome_kind activity_ttl delivery_template attempts_template claim_lease_until endpoint_template hold then_member then_lease_until then_handed *index_statuses
-- Uses: destination status activity chain claim
-- index_keys, index_statuses, due_at, archive_key, event_template: as status.lua takes them.
-- metrics_key, circuits_key: the counters hash and the open circuits ('' for both:
-- metrics off). attempt_counter: the counter of this attempt's kind
-- (attempts:outcome:error_kind:status_class); duration_bucket: the histogram bucket
-- its duration falls in; a final status also counts in finished:<status>.
-- activity_key, tenant_activity_key, attempt_kind, outcome_kind, activity_ttl: as
-- activity.lua takes them. pushback ... slow_margin_ms: as adapt (destination.lua)
-- takes them. park_at / due_at: '' for none. destination: '' when none was entered.
-- delivery_template, attempts_template: as chain.lua takes them (a final status wakes
-- the next delivery of its ordering key).
-- Returns named fields, each only when there is one (a reply's every string costs
-- Redis about 1,500 instructions): with handoff (the caller's queue; '' for none),
-- handed: the run waiting at the destination that the slot left goes to, for the
-- caller to take and run next, when it is routed to that queue (default_queue: the
-- queue of a delivery without one); it waits in the schedule a moment meanwhile
-- (wake_one, destination.lua). An attempt on record already, or whose delivery is
-- gone (deleted while the attempt was in flight), has nothing of it written back.
-- claim_lease_until: with handoff, the handed run is claimed here too, with a lease
-- until then (claim.lua; '' for not): it leaves the schedule, its claim's lease
-- bringing it back should this reply be lost, and its claim is returned as 'claim' (a
-- list of named fields, as claim_attempt.lua returns it). endpoint_template, hold: as
-- claim_attempt.lua takes them.
-- then_member: the run the caller makes next ('' for none), claimed after the record
-- in the same call (claim.lua), with a lease until then_lease_until, whatever the
-- record did; then_handed '1': a run an earlier record handed over, which waits in the
-- schedule, taken out of it first. Its claim is returned as 'then' (a list of named
-- fields, as claim_attempt.lua returns it).
-- Claim the run `member` (id:cycle:retries) until lease_until, as claim_attempt.lua.
local function claim_run(member, lease_until)
  local id, run_cycle, run_retries = string.match(member, '^(.*):(%d+):(%d+)$')
  return claim(delivery_template_head .. id .. delivery_template_tail,
               attempts_template_head .. id .. attempts_template_tail,
               running_key, run_cycle, run_retries, updated_score, lease_until, member,
               endpoint_template, limit, stalled, cooldown, circuits_key, hold, horizon)
end

local function finish(reply)
  if then_member == '' then return reply end
  if then_handed == '1' then redis.call('ZREM', scheduled_key, then_member) end
  local n = #reply
  reply[n + 1], reply[n + 2] = 'then', claim_run(then_member, then_lease_until)
  return reply
end

-- What the steps below read of the record, in one call: none of them writes it first.
local f = redis.call('HMGET', delivery_key, 'status', 'event_id', 'ordering_chain',
                     'endpoint_id')
local was = f[1]
if not was then
  redis.call('ZREM', running_key, member)
  if destination ~= '' then
    redis.call('ZREM', (destination_keys(destination)), member)
  end
  return finish({})
end
if redis.call('LLEN', attempts_key) >= tonumber(number) then return finish({}) end
redis.call('RPUSH', attempts_key, attempt)
-- Stopped while this attempt was in flight (skipped, its endpoint disabled): it stays
-- stopped, with its reason, unless this attempt delivered it.
local stopped = was == 'retries_exhausted' and status ~= 'delivered'
if metrics_key ~= '' then
  redis.call('HINCRBY', metrics_key, attempt_counter, '1')
  redis.call('HINCRBY', metrics_key, 'duration_bucket:' .. duration_bucket, '1')
  redis.call('HINCRBYFLOAT', metrics_key, 'duration_sum', duration_seconds)
  if (status == 'delivered' or status == 'retries_exhausted') and not stopped then
    redis.call('HINCRBY', metrics_key, 'finished:' .. status, '1')
  end
end
count_activity(activity_key, tenant_activity_key, delivery_key, was, attempt_kind,
               outcome_kind, activity_ttl, f[4] or '')
if not stopped then
  settle(delivery_key, attempts_key, due_key, index_keys, index_count, index_statuses, was,
         delivery_id, status, updated_at, next_attempt_at, stop_reason, due_at, updated_score,
         ttl, archive_key, event_template, f[2])
end
if (status == 'delivered' or status == 'retries_exhausted') and not stopped then
  unchain(delivery_key, delivery_id, updated_score, scheduled_key, due_key, delivery_template,
          attempts_template, f[3])
end
redis.call('ZREM', running_key, member)
if park_at ~= '' and not stopped then redis.call('ZADD', scheduled_key, park_at, next_member) end
if destination == '' then return finish({}) end
-- The breaker's fields that adapt and leave read, in one call: adapt writes none that
-- leave reads, and pump none of them.
local inflight, breaker, waiting, paced, throttled = destination_keys(destination)
local read = read_breaker(breaker, {'pace_limit', 'pace_rate', 'paced_at', 'avg_ms', 'ok_sec',
                                    'ok_n', 'ok_prev', 'rate_next', 'rate_free', 'failures',
                                    'open_until', 'cooldown', 'probing', 'probe_until',
                                    'wake_at', 'kept_at'})
local lowered, repaced = adapt(
  breaker, updated_score, duration_ms, succeeded, pushback, retry_after, adaptive, limit,
  rate_limit, paced_index, destination, decrease, rate_floor, rate_ceiling, pause_max,
  slow_factor, slow_margin_ms, read)
if lowered == 1 and metrics_key ~= '' then redis.call('HINCRBY', metrics_key, 'pace_lowered', '1') end
-- What waits for the rate limit gets its reservations as the horizon moves on.
local _, rate
if repaced then
  _, rate = effective(breaker, tonumber(limit), tonumber(rate_limit))
else
  _, rate = pace_limits(tonumber(limit), tonumber(rate_limit), read.pace_limit, read.pace_rate)
end
-- Only a destination that had a rate (rate_next or rate_free set) can have runs
-- throttled; one whose breaker expired with runs still there has their due marks.
if rate > 0 or ((read.rate_next or read.rate_free)
                and redis.call('EXISTS', throttled) == 1) then
  pump(breaker, throttled, paced, scheduled_key, tonumber(updated_score), rate,
       tonumber(horizon))
end
local open_until, cleared, handed = leave(
  inflight, breaker, waiting, scheduled_key, member, succeeded, updated_score,
  failures_to_open, cooldown, max_cooldown, duration_ms, limit, stalled, read, handoff,
  default_queue, delivery_template, claim_lease_until ~= '')
if circuits_key ~= '' then
  if tonumber(open_until) > 0 then redis.call('ZADD', circuits_key, open_until, destination)
  elseif cleared then redis.call('ZREM', circuits_key, destination) end
end
if handed == '' then return finish({}) end
local reply = {'handed', handed}
if claim_lease_until ~= '' then
  reply[3], reply[4] = 'claim', claim_run(handed, claim_lease_until)
end
return finish(reply)
