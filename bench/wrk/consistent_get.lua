-- Linearizable reads of a consistent bucket's keys, for bench/consistent_bench.py (one wrk per
-- node; the harness writes every key first, so they all hit).
-- Arguments after `--`: KEYS VALUE_SIZE THREADS BUCKET_PATH UNUSED PART PARTS
--   VALUE_SIZE and UNUSED keep the argument list the same as consistent_put.lua's
--   BUCKET_PATH  e.g. "/types/strong/buckets/bench"; keys are BUCKET_PATH/keys/kI
--   PART/PARTS   this wrk's index (0-based) among the wrk processes sharing the key space
-- Thread t of part p starts at key (p*THREADS + t) * KEYS / (PARTS*THREADS) and cycles through
-- all keys. done() prints the latency histogram ("hist <microseconds> <count>" lines).

local started = 0

function setup(thread)
   thread:set("thread_index", started)
   started = started + 1
end

local keys, bucket_path, next_key
local formatted = {}

function init(args)
   keys = tonumber(args[1]) or 1000
   local nthreads = tonumber(args[3]) or 1
   bucket_path = args[4] or "/types/strong/buckets/bench"
   local part = tonumber(args[6]) or 0
   local parts = tonumber(args[7]) or 1
   local slot = part * nthreads + (thread_index or 0)
   next_key = math.floor(slot * keys / (parts * nthreads)) % keys
end

function request()
   local index = next_key
   next_key = (next_key + 1) % keys
   local req = formatted[index]
   if req == nil then
      req = wrk.format("GET", bucket_path .. "/keys/k" .. index)
      formatted[index] = req
   end
   return req
end

function done(summary, latency, requests)
   for i = 1, #latency do
      local us, n = latency(i)
      io.write(string.format("hist %d %d\n", us, n))
   end
end
