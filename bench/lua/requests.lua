-- wrk script: cycles through the request lines of BENCH_LINES ("path" or "path<TAB>body"), sends
-- them with BENCH_METHOD and the Authorization header BENCH_TOKEN (if set), BENCH_DELAY_MS apart
-- on each connection (if set), and counts every answer whose status is not BENCH_EXPECT.
-- `done` prints one line "BENCH {json}" for bench.run.
local method = os.getenv("BENCH_METHOD") or "GET"
local expected = tonumber(os.getenv("BENCH_EXPECT") or "200")
local token = os.getenv("BENCH_TOKEN")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("offset", counter * 7919)  -- threads start at different lines
  table.insert(threads, thread)
end

function init(args)
  requests = {}
  local headers = {}
  if token and token ~= "" then headers["Authorization"] = token end
  for line in io.lines(os.getenv("BENCH_LINES")) do
    local path, body = line:match("^([^\t]+)\t(.*)$")
    if path then
      headers["Content-Type"] = "application/json"
    else
      path = line
    end
    table.insert(requests, wrk.format(method, path, headers, body))
  end
  index = offset % #requests
  answered = 0
  unexpected = 0
  last_unexpected = 0
end

function request()
  index = index % #requests + 1
  return requests[index]
end

if delay_ms > 0 then
  -- paced: each connection waits this long before its next request
  function delay()
    return delay_ms
  end
end

function response(status, headers, body)
  answered = answered + 1
  if status ~= expected then
    unexpected = unexpected + 1
    last_unexpected = status
  end
end

function done(summary, latency, requests)
  local answered, unexpected, last = 0, 0, 0
  for _, thread in ipairs(threads) do
    answered = answered + thread:get("answered")
    unexpected = unexpected + thread:get("unexpected")
    if thread:get("last_unexpected") ~= 0 then last = thread:get("last_unexpected") end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "answered": %d, "unexpected": %d, "last_unexpected": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, answered, unexpected, last,
    e.connect, e.read, e.write, e.timeout, latency:percentile(50), latency:percentile(99)))
end
