-- wrk script for durable config mutations (bench/http/run.sh).
--   wrk ... -s mutations.lua http://HOST:PORT -- cloisterd   PUT /api/v1/config {"description":"..."}
--   wrk ... -s mutations.lua http://HOST:PORT -- etcd        POST /v3/kv/put {"key":b64,"value":b64}
-- Every request carries a different text ("bench t<thread> n<counter> <run tag>"). Every response
-- is checked: cloisterd answers domain rejections with 200 + {"status":"FAIL"}, so a 2xx alone
-- does not prove the change was accepted. done() prints one line the driver parses:
--   MUTATIONS sent=N ok=N bad=N
-- and the first few bad answers go to stderr.

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = b64chars:sub(c1 + 1, c1 + 1) .. b64chars:sub(c2 + 1, c2 + 1) ..
                    (b and b64chars:sub(c3 + 1, c3 + 1) or "=") ..
                    (c and b64chars:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

function init(args)
  mode = args[1] or "cloisterd"
  tag = args[2] or "run"
  sent, ok, bad = 0, 0, 0
  if mode == "etcd" then
    path = "/v3/kv/put"
    method = "POST"
    -- The etcd counterpart of cloisterd's single "description" setting: one key, a new value
    -- (and a new revision) per put.
    key64 = base64("config/description")
    ok_mark = '"revision"'
  elseif mode == "cloisterd" then
    path = "/api/v1/config"
    method = "PUT"
    ok_mark = '"status":"OK"'
  else
    error("mode must be cloisterd or etcd, not " .. tostring(mode))
  end
  headers = { ["Content-Type"] = "application/json" }
end

function request()
  sent = sent + 1
  local text = "bench t" .. tid .. " n" .. sent .. " " .. tag
  local body
  if mode == "etcd" then
    body = '{"key":"' .. key64 .. '","value":"' .. base64(text) .. '"}'
  else
    body = '{"description":"' .. text .. '"}'
  end
  return wrk.format(method, path, headers, body)
end

function response(status, headers, body)
  if status == 200 and body:find(ok_mark, 1, true) then
    ok = ok + 1
  else
    bad = bad + 1
    if bad <= 3 then
      io.stderr:write(string.format("bad answer (%s, thread %d): %d %s\n", mode, tid, status,
                                    string.sub(body or "", 1, 200)))
    end
  end
end

function done(summary, latency, requests)
  local s, o, b = 0, 0, 0
  for _, t in ipairs(threads) do
    s = s + t:get("sent")
    o = o + t:get("ok")
    b = b + t:get("bad")
  end
  io.write(string.format("MUTATIONS sent=%d ok=%d bad=%d\n", s, o, b))
end
