-- Move up to `limit` members scored at or below `max_score` from one sorted set to
-- another, scored `new_score` there: a due run changes hands exactly once.
-- KEYS: source_key target_key
-- ARGV: max_score new_score limit
-- Returns: the members moved.
local members = redis.call('ZRANGE', source_key, '-inf', max_score, 'BYSCORE', 'LIMIT', 0,
                           limit)
for _, member in ipairs(members) do
  redis.call('ZREM', source_key, member)
  redis.call('ZADD', target_key, new_score, member)
end
return members
