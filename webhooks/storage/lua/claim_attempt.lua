-- Claim attempt retries+1 of a delivery's current cycle, with everything the attempt
-- needs, in one call: the delivery's fields, its endpoint, and a place at its
-- destination. Endpoint and destination keys are only known from the record, so
-- they come as key templates from keys.py (string.format with the id).
-- KEYS: delivery_key attempts_key running_key
-- ARGV: cycle retries now lease_until member endpoint_template inflight_template breaker_template waiting_template limit stalled cooldown circuits_key paced_template hold throttled_template horizon
-- Uses: destination claim
-- Returns named fields:
--   outcome      claimed | missing | stale (an older cycle) | final | recorded (already
--                made) | busy (running elsewhere) | behind (it waits behind the delivery
--                before it of its ordering key, which wakes it: chain.lua)
--   url, and those of tenant_id, endpoint_id, event_type, cycle_offset (the attempts
--   made before this cycle: the attempt's number is retries + 1 more), destination
--   (as stored) and test ('1' for a test event) that are set
--   body (when claimed)
--   endpoint     the endpoint's JSON, when the claim read it ('' if it is gone)
--   entry        what entering the destination said (enter's list of named fields);
--                absent when not entered: a record with no destination, or an
--                endpoint that is gone or disabled.
return claim(delivery_key, attempts_key, running_key, cycle, retries, now, lease_until,
             member, endpoint_template, inflight_template, breaker_template,
             waiting_template, limit, stalled, cooldown, circuits_key, paced_template, hold,
             throttled_template, horizon)
