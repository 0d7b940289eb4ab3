-- End web sessions: those a set names (a tenant's, which is then deleted), or, with
-- no set, up to `limit` of every session (called again until it returns 0).
-- KEYS: tenant_sessions_key all_sessions_key
-- ARGV: limit
-- tenant_sessions_key: '' to end sessions of every tenant and the operator's.
-- Returns: {sessions looked at, sessions ended} (those that had lapsed are not ended).
local members
if tenant_sessions_key ~= '' then
  members = redis.call('SMEMBERS', tenant_sessions_key)
  redis.call('DEL', tenant_sessions_key)
else
  members = redis.call('ZRANGE', all_sessions_key, 0, tonumber(limit) - 1)
end
local ended = 0
for _, key in ipairs(members) do
  ended = ended + redis.call('DEL', key)
  redis.call('ZREM', all_sessions_key, key)
end
return {#members, ended}
