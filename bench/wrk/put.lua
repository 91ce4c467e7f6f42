-- PUT a fixed-size body to keys k0..k(N-1) of one bucket, cycling through them.
-- Arguments after `--`: KEYS VALUE_SIZE THREADS [BUCKET]
-- Each wrk thread starts at its own offset (thread i at i*KEYS/THREADS) so that the
-- threads write different keys rather than the same ones in lockstep.

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local common = dofile(here .. "common.lua")

setup = common.setup

local keys, bucket, next_key, headers, body

function init(args)
   keys = tonumber(args[1]) or 10000
   local value_size = tonumber(args[2]) or 256
   bucket = args[4] or "bench"
   next_key = common.start_key(args, keys)
   headers = { ["Content-Type"] = "application/octet-stream" }
   body = string.rep("v", value_size)
end

function request()
   local path = "/buckets/" .. bucket .. "/keys/k" .. next_key
   next_key = (next_key + 1) % keys
   return wrk.format("PUT", path, headers, body)
end
