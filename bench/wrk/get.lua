-- GET keys k0..k(N-1) of one bucket, cycling through them (run put.lua first so they hit).
-- Arguments after `--`: KEYS VALUE_SIZE THREADS [BUCKET]  (VALUE_SIZE is unused; it keeps
-- the argument list the same as put.lua's)
-- Each wrk thread starts at its own offset (thread i at i*KEYS/THREADS).

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local common = dofile(here .. "common.lua")

setup = common.setup

local keys, bucket, next_key

function init(args)
   keys = tonumber(args[1]) or 10000
   bucket = args[4] or "bench"
   next_key = common.start_key(args, keys)
end

function request()
   local path = "/buckets/" .. bucket .. "/keys/k" .. next_key
   next_key = (next_key + 1) % keys
   return wrk.format("GET", path)
end
