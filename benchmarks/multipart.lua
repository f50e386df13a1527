-- wrk script: POST one image as multipart field "image"; prints a JSON summary line.
-- usage: wrk -t1 -c8 -d10s -s multipart.lua 'http://127.0.0.1:8000/predict?model=custom2' -- image.png
local boundary = "----wrkbenchmarkboundary7MA4YWxkTrZu0gW"

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local data = file:read("*all")
  file:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
  wrk.body = "--" .. boundary .. "\r\n"
    .. "Content-Disposition: form-data; name=\"image\"; filename=\"digit.png\"\r\n"
    .. "Content-Type: image/png\r\n\r\n" .. data .. "\r\n--" .. boundary .. "--\r\n"
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format(
    "JSON {\"requests\": %d, \"duration_us\": %d, \"socket_errors\": %d, \"non_2xx\": %d, "
      .. "\"p50_ms\": %.3f, \"p90_ms\": %.3f, \"p99_ms\": %.3f}\n",
    summary.requests, summary.duration, errors, summary.errors.status,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000))
end
