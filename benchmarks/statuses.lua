-- wrk script: POST one image as multipart field "image", count the answers by status;
-- prints a STATUSES line and the JSON summary line of multipart.lua.
-- usage: wrk -t1 -c128 -d30s -s statuses.lua 'http://127.0.0.1:8000/predict?model=custom2' -- image.png [delay_ms]
-- With delay_ms each connection waits that long before its next request, which turns wrk's
-- closed loop into a bounded offered rate (about connections * 1000 / delay_ms requests/s).
local boundary = "----wrkbenchmarkboundary7MA4YWxkTrZu0gW"
-- response() runs in each thread's own Lua state and done() in the main one: the counts
-- are read back from every thread with thread:get.
local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

local pause = 0

function init(args)
  counts = {}
  pause = tonumber(args[2] or "0")
  local file = assert(io.open(args[1], "rb"))
  local data = file:read("*all")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
  wrk.body = "--" .. boundary .. "\r\n"
    .. "Content-Disposition: form-data; name=\"image\"; filename=\"digit.png\"\r\n"
    .. "Content-Type: image/png\r\n\r\n" .. data .. "\r\n--" .. boundary .. "--\r\n"
end

function delay()
  return pause
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
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
