-- What the bench/wrk scripts share: thread numbering, where a thread starts in the key space,
-- a cycle of preformatted requests, the latency histogram output and base64 (etcd's JSON keys).
-- A script loads it from its own folder, so it works whatever the working directory:
--   local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
--   local common = dofile(here .. "common.lua")
-- wrk runs every script in its main Lua state (setup, done) and in one state per thread (init,
-- request, response); each state loads its own copy of this file.
-- Shared argument positions after `--`: KEYS VALUE_SIZE THREADS ... PART PARTS (6th and 7th),
-- PART/PARTS being this wrk's index (0-based) among the wrk processes sharing the key space.

local common = {}

-- The thread objects setup() saw, in the main state (for done() to read their globals).
common.threads = {}
local started = 0

-- Use as the script's setup: gives each thread a global `thread_index` (0, 1, ...).
function common.setup(thread)
   thread:set("thread_index", started)
   started = started + 1
   common.threads[#common.threads + 1] = thread
end

-- This thread's slot among every thread of every wrk sharing the key space, and their number:
-- slot = PART*THREADS + thread_index, slots = PARTS*THREADS.
function common.slot(args)
   local threads = tonumber(args[3]) or 1
   local part = tonumber(args[6]) or 0
   local parts = tonumber(args[7]) or 1
   return part * threads + (thread_index or 0), parts * threads
end

-- The key this thread starts at, slot * KEYS / slots, so that the threads of every wrk walk
-- their own stretches of keys rather than the same ones in lockstep.
function common.start_key(args, keys)
   local slot, slots = common.slot(args)
   return math.floor(slot * keys / slots) % keys
end

-- A request() cycling through keys first_key, first_key + 1, ... (mod keys), formatting each
-- key's request once with build(index) and reusing it after.
function common.cycle(keys, first_key, build)
   local next_key = first_key
   local formatted = {}
   return function()
      local index = next_key
      next_key = (next_key + 1) % keys
      local req = formatted[index]
      if req == nil then
         req = build(index)
         formatted[index] = req
      end
      return req
   end
end

-- Makes the script one that cycles through keys k0..k(KEYS-1) from common.start_key, one
-- preformatted request per key: installs the globals setup, init, request and done (the latency
-- histogram). build_for(args) is called in init with the arguments after `--` and returns
-- build(index), which formats key index's request.
function common.cycle_keys(default_keys, build_for)
   setup = common.setup
   done = common.print_histogram
   local cycle
   function init(args)
      local keys = tonumber(args[1]) or default_keys
      cycle = common.cycle(keys, common.start_key(args, keys), build_for(args))
   end
   function request()
      return cycle()
   end
end

-- "?QUERY" for a QUERY argument, "" for none ("-" or empty).
function common.query_suffix(query)
   if query == nil or query == "-" or query == "" then return "" end
   return "?" .. query
end

-- Use as (or call from) the script's done: the full latency histogram as
-- "hist <microseconds> <count>" lines, so that the harness can merge the wrk processes'
-- distributions into exact percentiles.
function common.print_histogram(summary, latency, requests)
   for i = 1, #latency do
      local us, count = latency(i)
      io.write(string.format("hist %d %d\n", us, count))
   end
end

local ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function common.base64(text)
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

return common
