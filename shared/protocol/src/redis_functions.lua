#!lua name=vigil
-- Vigil's stream appends, as Redis functions (library version @VERSION@).
-- Each takes the stream as its one key and field/value pairs as arguments, refuses an entry
-- over its cap, always lets Redis choose the id (`*`) and trims the stream (`MAXLEN ~`).
-- Loaded by the executor at start-up with FUNCTION LOAD REPLACE (see docs/redis.md).

local function append(keys, args, cap, maxlen)
  if #keys ~= 1 then
    return redis.error_reply('ERR vigil: exactly one stream key')
  end
  if #args == 0 or #args % 2 ~= 0 then
    return redis.error_reply('ERR vigil: field/value pairs expected')
  end
  local size = 0
  for i = 1, #args do
    size = size + #args[i]
  end
  if size > cap then
    return redis.error_reply('ERR vigil: entry of ' .. size .. ' bytes is over the cap of ' .. cap)
  end
  local cmd = { 'XADD', keys[1], 'MAXLEN', '~', tostring(maxlen), '*' }
  for i = 1, #args do
    cmd[#cmd + 1] = args[i]
  end
  return redis.call(unpack(cmd))
end

redis.register_function('vigil_version', function() return '@VERSION@' end)

redis.register_function('vigil_request_append', function(keys, args)
  if #args ~= 2 or args[1] ~= '@ENVELOPE_FIELD@' then
    return redis.error_reply('ERR vigil: a request entry is one envelope field')
  end
  return append(keys, args, @REQUEST_CAP@, @REQUEST_MAXLEN@)
end)

redis.register_function('vigil_audit_append', function(keys, args)
  local shaped = (#args == 2 or (#args == 4 and args[3] == '@EXECUTOR_FIELD@'))
  if not shaped or args[1] ~= '@RECORD_FIELD@' then
    return redis.error_reply('ERR vigil: an audit entry is a record field and its executor')
  end
  return append(keys, args, @AUDIT_CAP@, @AUDIT_MAXLEN@)
end)

redis.register_function('vigil_dead_append', function(keys, args)
  return append(keys, args, @DEAD_CAP@, @DEAD_MAXLEN@)
end)
