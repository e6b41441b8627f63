-- wrk script for the iotman benchmark: POST one prepared body on every request.
-- The body and its media type come from the environment, so one script serves the
-- single-event run (application/json) and the NDJSON batch run (application/x-ndjson).
-- wrk.method/body/headers are set once, so wrk builds the request a single time.

local body_path = assert(os.getenv("BENCH_BODY_FILE"), "BENCH_BODY_FILE is not set")
local body_file = assert(io.open(body_path, "rb"))
wrk.method = "POST"
wrk.body = body_file:read("*a")
body_file:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"

-- One machine-readable line after wrk's own report (bench/wrk_load.py reads it).
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "BENCH_SUMMARY {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d,"
      .. "\"connect_errors\":%d,\"read_errors\":%d,\"write_errors\":%d,\"status_errors\":%d,\"timeouts\":%d,"
      .. "\"latency_p50_us\":%d,\"latency_p90_us\":%d,\"latency_p99_us\":%d,\"latency_max_us\":%d}\n",
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(90)),
    math.floor(latency:percentile(99)), math.floor(latency.max)
  ))
end
