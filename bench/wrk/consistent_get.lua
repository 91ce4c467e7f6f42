-- Linearizable reads of a consistent bucket's keys, for bench/consistent_bench.py (one wrk per
-- node; the harness writes every key first, so they all hit).
-- Arguments after `--`: KEYS VALUE_SIZE THREADS BUCKET_PATH UNUSED PART PARTS
--   VALUE_SIZE and UNUSED keep the argument list the same as consistent_put.lua's
--   BUCKET_PATH  e.g. "/types/strong/buckets/bench"; keys are BUCKET_PATH/keys/kI
--   PART/PARTS   this wrk's index (0-based) among the wrk processes sharing the key space
-- Thread t of part p starts at key (p*THREADS + t) * KEYS / (PARTS*THREADS) and cycles through
-- all keys. done() prints the latency histogram ("hist <microseconds> <count>" lines).

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local common = dofile(here .. "common.lua")

common.cycle_keys(1000, function(args)
   local bucket_path = args[4] or "/types/strong/buckets/bench"
   return function(index)
      return wrk.format("GET", bucket_path .. "/keys/k" .. index)
   end
end)
