-- wrk script used by every bench/run measurement. Configured by environment variables so that
-- wrk only pays for the hooks a run needs (defining response() makes wrk parse every header):
--   BENCH_PACE_MS     each connection waits this many ms before each request (fixed-rate load:
--                     about connections * 1000 / BENCH_PACE_MS requests per second)
--   BENCH_STOP_AFTER  stop after this many responses: the thread stops and prints `bench-stopped`,
--                     and bench/lib/wrk.js answers with SIGINT, which ends wrk's main sleep (-d
--                     stays the upper bound; wrk.thread:stop() alone would not end the run early)
--   BENCH_STICKY_COOKIE  each request carries the cookie NAME=<one of 4096 random values> (sticky by
--                     key, bench/servers/node_hello.js): the requests are built once, here, so
--                     the request() hook only picks one
-- done() prints one line `bench-result <json>` that bench/lib/wrk.js parses, with wrk's own CPU
-- time (os.clock(): the process's user+system time, every thread) so that a run can tell whether
-- the load generator, not the server, set the rate.

local pace_ms = tonumber(os.getenv("BENCH_PACE_MS") or "")
if pace_ms then
  function delay()
    return pace_ms
  end
end

local stop_after = tonumber(os.getenv("BENCH_STOP_AFTER") or "")
if stop_after then
  local seen = 0
  function response(status, headers, body)
    seen = seen + 1
    if seen == stop_after then
      io.write("bench-stopped\n")
      io.stdout:flush()
      wrk.thread:stop()
    end
  end
end

local sticky_cookie = os.getenv("BENCH_STICKY_COOKIE")
if sticky_cookie and sticky_cookie ~= "" then
  local built = {}
  -- Sessions: sticky spreads keys over 2 workers as a fair coin would, so a worker's share
  -- varies by 1/(2 sqrt N) between key sets: 3.1 % at 256 sessions (a max/min of 1.18, one
  -- set in five, capped the run at the busier worker), 0.8 % at 4096, closer to what a site
  -- with sticky sessions holds (crates/corral-core/src/policy/sticky.rs, two_slots_share_keys_*).
  local sessions = 4096
  function init(args)
    math.randomseed(os.time())
    for i = 1, sessions do
      local sid = string.format("%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
      -- wrk.format takes these headers instead of wrk.headers (-H), so start from a copy.
      local headers = {}
      for k, v in pairs(wrk.headers) do
        headers[k] = v
      end
      headers["Cookie"] = sticky_cookie .. "=" .. sid
      built[i] = wrk.format(nil, nil, headers)
    end
  end
  function request()
    return built[math.random(1, sessions)]
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'bench-result {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d},"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d},' ..
    '"cpu_s":%.4f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, os.clock()))
end
