-- PUT a fixed-size body to keys k0..k(N-1) of one bucket with a query string (e.g. w=2),
-- for bench/cluster_bench.py, which runs one wrk per cluster node at the same time.
-- Arguments after `--`: KEYS VALUE_SIZE THREADS BUCKET QUERY PART PARTS
--   QUERY        appended after `?` (e.g. "w=2"; "-" for none)
--   PART/PARTS   this wrk's index (0-based) among the wrk processes sharing the key space
-- Thread t of part p starts at key (p*THREADS + t) * KEYS / (PARTS*THREADS), so every thread of
-- every wrk writes its own stretch of keys rather than the same ones in lockstep.
-- done() prints the full latency histogram ("hist <microseconds> <count>" lines) so that the
-- harness can merge the wrk processes' distributions into exact percentiles.

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local common = dofile(here .. "common.lua")

common.cycle_keys(10000, function(args)
   local value_size = tonumber(args[2]) or 256
   local bucket = args[4] or "bench"
   local suffix = common.query_suffix(args[5])
   local headers = { ["Content-Type"] = "application/octet-stream" }
   local body = string.rep("v", value_size)
   return function(index)
      return wrk.format("PUT", "/buckets/" .. bucket .. "/keys/k" .. index .. suffix, headers, body)
   end
end)
