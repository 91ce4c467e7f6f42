-- GET keys k0..k(N-1) of one bucket with a query string (e.g. r=2), for bench/cluster_bench.py,
-- which runs one wrk per cluster node at the same time (write the keys first so they hit).
-- Arguments after `--`: KEYS VALUE_SIZE THREADS BUCKET QUERY PART PARTS
--   VALUE_SIZE is unused: it keeps the argument list the same as cluster_put.lua's
--   QUERY        appended after `?` (e.g. "r=2"; "-" for none)
--   PART/PARTS   this wrk's index (0-based) among the wrk processes sharing the key space
-- Thread t of part p starts at key (p*THREADS + t) * KEYS / (PARTS*THREADS).
-- done() prints the full latency histogram ("hist <microseconds> <count>" lines) so that the
-- harness can merge the wrk processes' distributions into exact percentiles.

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local common = dofile(here .. "common.lua")

common.cycle_keys(10000, function(args)
   local bucket = args[4] or "bench"
   local suffix = common.query_suffix(args[5])
   return function(index)
      return wrk.format("GET", "/buckets/" .. bucket .. "/keys/k" .. index .. suffix)
   end
end)
