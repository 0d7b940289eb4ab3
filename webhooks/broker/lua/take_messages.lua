-- Take messages off a kombu Redis queue for one pool process to run itself: its fair
-- share of what waits, so that a short queue is not emptied into one process while
-- others idle, and at most `most` (held in that process's memory until each is claimed).
-- KEYS: queue_key
-- ARGV: most share
-- Returns: the messages taken, next first (as BRPOP would have fetched them); none for
-- an empty queue.
local queue_key = KEYS[1]
local most, share = tonumber(ARGV[1]), tonumber(ARGV[2])
local waiting = redis.call('LLEN', queue_key)
if waiting == 0 then return {} end
local count = math.max(1, math.min(most, math.floor(waiting / share)))
return redis.call('RPOP', queue_key, count)
