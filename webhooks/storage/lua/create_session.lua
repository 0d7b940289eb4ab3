-- Create a web session, unless the tenant it is for is gone, is being deleted, or is
-- another tenant registered under the same id since its token was checked: one step,
-- so that deleting the tenant cannot slip between the check and the creation.
-- KEYS: session_key tenant_key tenant_sessions_key all_sessions_key
-- ARGV: role tenant_id csrf expires_at tenant_created_at grant ttl now
-- tenant_id, tenant_created_at: '' for the operator's session (tenant_key and
-- tenant_sessions_key are then not touched). tenant_created_at is the tenant's
-- created_at as the token's check read it; grant, the fingerprint of the credential.
-- Returns: 1 if created, 0 if the tenant is not the one the token was for.
if tenant_id ~= '' then
  local tenant = redis.call('HMGET', tenant_key, 'created_at', 'deleting')
  if tenant[1] ~= tenant_created_at or tenant[2] then return 0 end
end
redis.call('HSET', session_key, 'role', role, 'tenant_id', tenant_id, 'csrf', csrf,
  'expires_at', expires_at, 'tenant_created_at', tenant_created_at, 'grant', grant)
redis.call('EXPIRE', session_key, tonumber(ttl))
if tenant_id ~= '' then
  redis.call('SADD', tenant_sessions_key, session_key)
  redis.call('EXPIRE', tenant_sessions_key, 90 * 86400)
end
redis.call('ZREMRANGEBYSCORE', all_sessions_key, '-inf', now)
redis.call('ZADD', all_sessions_key, expires_at, session_key)
return 1
