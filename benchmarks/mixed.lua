-- wrk script: cycle through prepared requests (path, content type, body file), count the
-- answers by status; prints a STATUSES line and a JSON summary line (benchmarks/mixed.py).
-- usage: wrk -t1 -c32 -d60s -s mixed.lua http://127.0.0.1:8000 -- manifest.tsv [delay_ms]
-- With delay_ms each connection waits that long before its next request, which turns wrk's
-- closed loop into a bounded offered rate (about connections * 1000 / delay_ms requests/s).
local requests = {}
local index = 0
local pause = 0
-- response() runs in each thread's own Lua state and done() in the main one: the counts
-- are read back from every thread with thread:get.
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  counts = {}
  pause = tonumber(args[2] or "0")
  for line in io.lines(args[1]) do
    local path, content_type, body_file = line:match("([^\t]+)\t([^\t]+)\t([^\t]+)")
    local file = assert(io.open(body_file, "rb"))
    local body = file:read("*all")
    file:close()
    requests[#requests + 1] = wrk.format("POST", path, {["Content-Type"] = content_type}, body)
  end
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function delay()
  return pause
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests_made)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("counts")) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(totals) do
    parts[#parts + 1] = string.format("\"%d\": %d", status, count)
  end
  io.write("STATUSES {" .. table.concat(parts, ", ") .. "}\n")
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    "JSON {\"requests\": %d, \"duration_us\": %d, \"socket_errors\": %d, \"non_2xx\": %d, "
      .. "\"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f}\n",
    summary.requests, summary.duration, errors, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000))
end
