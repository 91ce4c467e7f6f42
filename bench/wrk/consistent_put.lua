-- Compare-and-set writes to a consistent bucket, for bench/consistent_bench.py (one wrk per node).
-- Arguments after `--`: KEYS VALUE_SIZE THREADS BUCKET_PATH CONTEXTS PART PARTS
--   BUCKET_PATH  e.g. "/types/strong/buckets/bench"; keys are BUCKET_PATH/keys/kI
--   CONTEXTS     a file of "I CONTEXT" lines: each key's current context (X-Riak-Vclock), as
--                the harness's create-if-absent fill returned them; "-" for none
--   PART/PARTS   this wrk's index (0-based) among the wrk processes sharing the key space
-- Thread t of part p owns keys [s*KEYS/S, (s+1)*KEYS/S) with s = p*THREADS + t, S = PARTS*THREADS,
-- and cycles through them alone, so a key's context only changes by this thread's own writes.
-- Every write is PUT ...?returnbody=true carrying the key's current context (compare-and-set):
-- the returned object's context is the next write's. A key without a known context (none in the
-- file, or its last write was not answered 200 by the time the cycle comes back) is read first
-- (a GET, counted apart) rather than written blind. The body starts with "kI|" so a response
-- names its key. done() prints "hist <us> <count>" lines and "ops cas|create|read <count>".

local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local common = dofile(here .. "common.lua")

setup = common.setup

local first, count, next_key, bucket_path, value_size
local contexts = {}
local awaiting = {}
cas, create, read = 0, 0, 0

local function load_contexts(path)
   if path == "-" or path == nil then return end
   local file = io.open(path, "r")
   if file == nil then return end
   for line in file:lines() do
      local index, context = line:match("^(%d+) (%S+)$")
      if index ~= nil then contexts[tonumber(index)] = context end
   end
   file:close()
end

function init(args)
   local keys = tonumber(args[1]) or 1000
   value_size = tonumber(args[2]) or 256
   bucket_path = args[4] or "/types/strong/buckets/bench"
   local slot, slots = common.slot(args)
   first = math.floor(slot * keys / slots)
   count = math.max(math.floor((slot + 1) * keys / slots) - first, 1)
   next_key = first
   load_contexts(args[5])
end

local function body_for(index)
   local head = "k" .. index .. "|"
   return head .. string.rep("v", math.max(value_size - #head, 0))
end

function request()
   local index = next_key
   next_key = first + ((next_key - first + 1) % count)
   local path = bucket_path .. "/keys/k" .. index
   local context = contexts[index]
   if awaiting[index] then
      -- Its last request was not answered with a context: learn the current one first.
      read = read + 1
      awaiting[index] = true
      return wrk.format("GET", path)
   end
   awaiting[index] = true
   local headers = { ["Content-Type"] = "application/octet-stream" }
   if context ~= nil then
      headers["X-Riak-Vclock"] = context
      cas = cas + 1
   else
      create = create + 1
   end
   return wrk.format("PUT", path .. "?returnbody=true", headers, body_for(index))
end

function response(status, headers, body)
   if status ~= 200 or body == nil then return end
   local index = tonumber(body:match("^k(%d+)|"))
   local context = headers["X-Riak-Vclock"] or headers["x-riak-vclock"]
   if index ~= nil and context ~= nil then
      contexts[index] = context
      awaiting[index] = nil
   end
end

function done(summary, latency, requests)
   common.print_histogram(summary, latency, requests)
   local totals = { cas = 0, create = 0, read = 0 }
   for _, thread in ipairs(common.threads) do
      for name, _ in pairs(totals) do
         totals[name] = totals[name] + (tonumber(thread:get(name)) or 0)
      end
   end
   for name, n in pairs(totals) do
      io.write(string.format("ops %s %d\n", name, n))
   end
end
