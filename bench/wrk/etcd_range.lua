-- etcd v3 JSON gateway: POST {GATEWAY}/kv/range {"key": b64(PREFIX/kI)} for keys k0..k(N-1),
-- cycling through them (write them first); for bench/cluster_bench.py (one wrk per member).
-- The range is linearizable (etcd's default: no "serializable" field), so a follower asks the
-- leader for its commit index (ReadIndex) before answering.
-- Arguments after `--`: KEYS VALUE_SIZE THREADS PREFIX GATEWAY PART PARTS
--   VALUE_SIZE is unused: it keeps the argument list the same as etcd_put.lua's
--   PREFIX       key prefix, e.g. "bench" -> keys "bench/k0", ...
--   GATEWAY      the gateway's path prefix: "/v3" (etcd 3.4+) or "/v3beta" (3.3)
--   PART/PARTS   this wrk's index (0-based) among the wrk processes sharing the key space
-- Thread t of part p starts at key (p*THREADS + t) * KEYS / (PARTS*THREADS).
-- done() prints the full latency histogram ("hist <microseconds> <count>" lines).

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local common = dofile(here .. "common.lua")

common.cycle_keys(10000, function(args)
   local prefix = args[4] or "bench"
   local path = (args[5] or "/v3") .. "/kv/range"
   local headers = { ["Content-Type"] = "application/json" }
   return function(index)
      local body = '{"key":"' .. common.base64(prefix .. "/k" .. index) .. '"}'
      return wrk.format("POST", path, headers, body)
   end
end)
