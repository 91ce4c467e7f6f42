-- etcd v3 JSON gateway: POST {GATEWAY}/kv/put {"key": b64(PREFIX/kI), "value": b64(VALUE)} for
-- keys k0..k(N-1), cycling through them; for bench/cluster_bench.py (one wrk per member).
-- Arguments after `--`: KEYS VALUE_SIZE THREADS PREFIX GATEWAY PART PARTS
--   PREFIX       key prefix (the bucket's counterpart), e.g. "bench" -> keys "bench/k0", ...
--   GATEWAY      the gateway's path prefix: "/v3" (etcd 3.4+) or "/v3beta" (3.3)
--   PART/PARTS   this wrk's index (0-based) among the wrk processes sharing the key space
-- Thread t of part p starts at key (p*THREADS + t) * KEYS / (PARTS*THREADS).
-- done() prints the full latency histogram ("hist <microseconds> <count>" lines).

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local common = dofile(here .. "common.lua")

common.cycle_keys(10000, function(args)
   local value_size = tonumber(args[2]) or 256
   local prefix = args[4] or "bench"
   local path = (args[5] or "/v3") .. "/kv/put"
   local headers = { ["Content-Type"] = "application/json" }
   local encoded_value = common.base64(string.rep("v", value_size))
   return function(index)
      local key = common.base64(prefix .. "/k" .. index)
      local body = '{"key":"' .. key .. '","value":"' .. encoded_value .. '"}'
      return wrk.format("POST", path, headers, body)
   end
end)
