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

local started = 0

function setup(thread)
   thread:set("thread_index", started)
   started = started + 1
end

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(text)
   local out = {}
   for i = 1, #text, 3 do
      local a, b, c = text:byte(i, i + 2)
      local n = a * 65536 + (b or 0) * 256 + (c or 0)
      local sextets = { math.floor(n / 262144) % 64, math.floor(n / 4096) % 64,
                        math.floor(n / 64) % 64, n % 64 }
      local chunk = {}
      for j = 1, 4 do
         chunk[j] = ALPHABET:sub(sextets[j] + 1, sextets[j] + 1)
      end
      if b == nil then chunk[3] = "=" end
      if c == nil then chunk[4] = "=" end
      out[#out + 1] = table.concat(chunk)
   end
   return table.concat(out)
end

local keys, prefix, path, next_key, headers
local formatted = {}

function init(args)
   keys = tonumber(args[1]) or 10000
   local threads = tonumber(args[3]) or 1
   prefix = args[4] or "bench"
   path = (args[5] or "/v3") .. "/kv/range"
   local part = tonumber(args[6]) or 0
   local parts = tonumber(args[7]) or 1
   local slot = part * threads + (thread_index or 0)
   next_key = math.floor(slot * keys / (parts * threads)) % keys
   headers = { ["Content-Type"] = "application/json" }
end

function request()
   local index = next_key
   next_key = (next_key + 1) % keys
   local req = formatted[index]
   if req == nil then
      local body = '{"key":"' .. base64(prefix .. "/k" .. index) .. '"}'
      req = wrk.format("POST", path, headers, body)
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
