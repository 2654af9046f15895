-- Like post.lua, but builds every request in request(): env WRK_TEMPLATE is the body with one %d,
-- replaced by a per-request counter (distinct inputs: every query misses the prediction cache)
-- unless WRK_UNIQUE=0, which sends the counter's first value every time (every query after the
-- first hits). Both modes pay the same Lua cost per request, so hit and miss compare fairly.
-- WRK_SEED (an integer) offsets the counter so that separate runs (a warm-up, then the measured
-- run) never repeat each other's inputs. WRK_APPS=N (N > 0) spreads the requests over N applications
-- in turn: WRK_PATH is then a format with one %d, the application's number 0..N-1.
-- WRK_HOOK=0 leaves response() undefined, so that wrk never hands a body to Lua (it costs the load
-- generator CPU per response): non-2xx then come from wrk's own count (summary.errors.status,
-- statuses >= 400) and defaults are not seen at all (printed as 0; the caller counts them elsewhere).

local template = os.getenv("WRK_TEMPLATE") or '{"input": [%d.5, 2.2, 3.3, 4.4]}'
local unique = os.getenv("WRK_UNIQUE") ~= "0"
local path = os.getenv("WRK_PATH")
local seed = tonumber(os.getenv("WRK_SEED") or "0")
local apps = tonumber(os.getenv("WRK_APPS") or "0")
local hook = os.getenv("WRK_HOOK") ~= "0"
local turn = 0

local threads = {}
function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

-- Each request is its head (request line and headers, built once per path, as wrk.format builds it:
-- Host, Content-Type, Content-Length) and the formatted body: one string.format and one
-- concatenation per request. wrk.format itself rebuilds the whole head in Lua every time, which on a
-- 2-core machine costs the load generator CPU that a target sharing its cores loses.
local heads = {}
local function head(p)
  p = p or wrk.path
  local h = heads[p]
  if h == nil then
    h = string.format("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: ",
      p, wrk.headers["Host"])
    heads[p] = h
  end
  return h
end

local counter = 0
function request()
  if unique then
    counter = counter + 1
  end
  local p = path
  if apps > 0 then
    p = string.format(path, turn % apps)
    turn = turn + 1
  end
  local body = string.format(template, seed + id * 100000000 + counter)
  return head(p) .. #body .. "\r\n\r\n" .. body
end

non2xx, defaults = 0, 0
-- wrk reads every body into Lua only when a global response function exists after loading the script
if hook then
  function response(status, headers, rbody)
    if status < 200 or status > 299 then
      non2xx = non2xx + 1
    elseif string.find(rbody, '"default":%s*true') then
      defaults = defaults + 1
    end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local n2, df = 0, 0
  if hook then
    for _, t in ipairs(threads) do
      n2 = n2 + t:get("non2xx")
      df = df + t:get("defaults")
    end
  else
    n2 = e.status
  end
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "non2xx": %d, "defaults": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
    summary.requests, summary.duration, n2, df,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
