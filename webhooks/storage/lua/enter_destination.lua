-- Enter a destination on its own, for a record that does not name its destination
-- (written before records stored it); the claim usually enters in the same call.
-- KEYS: inflight_key breaker_key waiting_key paced_key throttled_key
-- ARGV: now lease_until member limit stalled cooldown circuits_key destination rate hold horizon
-- Uses: destination
-- Returns: enter's named fields (destination.lua).
return enter(inflight_key, breaker_key, waiting_key, tonumber(now), lease_until, member,
             tonumber(limit), tonumber(stalled), tonumber(cooldown), circuits_key, destination,
             paced_key, tonumber(rate), tonumber(hold), throttled_key, tonumber(horizon))
