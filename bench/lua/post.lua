-- Posts one fixed JSON body (env WRK_BODY) and counts what came back.
-- A response is a prediction when its status is 2xx and its body does not say "default": true
-- (our frontend answers the default output with 200 when the latency objective is missed).
-- done() prints one line: WRK_RESULT {json}; bench/compare.py parses it.

local body = os.getenv("WRK_BODY") or '{"input": [1.1, 2.2, 3.3, 4.4]}'
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

non2xx, defaults = 0, 0
function response(status, headers, rbody)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  elseif string.find(rbody, '"default":%s*true') then
    defaults = defaults + 1
  end
end

function done(summary, latency, requests)
  local n2, df = 0, 0
  for _, t in ipairs(threads) do
    n2 = n2 + t:get("non2xx")
    df = df + t:get("defaults")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests": %d, "duration_us": %d, "non2xx": %d, "defaults": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
    summary.requests, summary.duration, n2, df,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
