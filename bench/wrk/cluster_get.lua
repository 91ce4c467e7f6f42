-- GET keys k0..k(N-1) of one bucket with a query string (e.g. r=2), for bench/cluster_bench.py,
-- which runs one wrk per cluster node at the same time (write the keys first so they hit).
-- Arguments after `--`: KEYS VALUE_SIZE THREADS BUCKET QUERY PART PARTS
--   VALUE_SIZE is unused: it keeps the argument list the same as cluster_put.lua's
--   QUERY        appended after `?` (e.g. "r=2"; "-" for none)
--   PART/PARTS   this wrk's index (0-based) among the wrk processes sharing the key space
-- Thread t of part p starts at key (p*THREADS + t) * KEYS / (PARTS*THREADS).
-- done() prints the full latency histogram ("hist <microseconds> <count>" lines) so that the
-- harness can merge the wrk processes' distributions into exact percentiles.

local started = 0

function setup(thread)
   thread:set("thread_index", started)
   started = started + 1
end

local keys, bucket, suffix, next_key
local formatted = {}

function init(args)
   keys = tonumber(args[1]) or 10000
   local threads = tonumber(args[3]) or 1
   bucket = args[4] or "bench"
   local query = args[5] or "-"
   local part = tonumber(args[6]) or 0
   local parts = tonumber(args[7]) or 1
   suffix = (query == "-" or query == "") and "" or ("?" .. query)
   local slot = part * threads + (thread_index or 0)
   next_key = math.floor(slot * keys / (parts * threads)) % keys
end

function request()
   local index = next_key
   next_key = (next_key + 1) % keys
   local req = formatted[index]
   if req == nil then
      req = wrk.format("GET", "/buckets/" .. bucket .. "/keys/k" .. index .. suffix)
      formatted[index] = req
   end
   return req
end

function done(summary, latency, requests)
   for i = 1, #latency do
      local us, count = latency(i)
      io.write(string.format("hist %d %d\n", us, count))
   end
end
