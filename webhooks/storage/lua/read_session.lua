-- Read a web session, and end it if its tenant is no longer the one it was made for
-- (deleted, being deleted, or registered again under the same id).
-- KEYS: session_key
-- ARGV: tenant_template
-- tenant_template: the tenant record's key with %s for its id (keys.py tenant).
-- Returns: the session's fields as a flat name, value list; empty if there is none.
local fields = redis.call('HGETALL', session_key)
if #fields == 0 then return fields end
local session = {}
for i = 1, #fields, 2 do session[fields[i]] = fields[i + 1] end
if session['tenant_id'] ~= '' then
  local tenant = redis.call('HMGET', string.format(tenant_template, session['tenant_id']),
    'created_at', 'deleting')
  if tenant[1] ~= session['tenant_created_at'] or tenant[2] then
    redis.call('DEL', session_key)
    return {}
  end
end
return fields
