-- paceline shared quota, script version 1: the GCRA of src/quota/gcra.rs over every dimension
-- of one quota, in Redis, on the server's clock. See the design note in src/distributed/shared_quota.rs.
--
-- KEYS[1]  the quota's hash: {paceline:quota:<key fingerprint>:<model>}:v1
--          The only key the script touches: on a Redis Cluster it runs on the primary of that
--          key's hash slot (EVALSHA is routed by KEYS[1]), and must stay a one-key script.
-- ARGV[1]  operation: admit | settle | pause
-- ARGV[2]  clock: "" for the server's TIME, else nanoseconds since the quota's epoch (the
--          conformance table in src/quota/gcra_cases.json runs on a fixed clock)
-- ARGV[3]  jitter margin, nanoseconds
-- ARGV[4 + 3i .. 6 + 3i] for dimension i = 0..3 (requests, tokens, input, output tokens):
--          per_minute (0: not known by the caller), burst, amount
--          admit: the cost; settle: the signed difference (+ charge, - refund);
--          pause: the cost the refused request needs when it goes again
-- ARGV[16] pause: nanoseconds from now until the pause ends
-- ARGV[17] pause: bit mask of the refused dimensions
-- ARGV[18] "1": a quota this hash does not hold yet starts empty, not full (the caller paced
--          on its own while Redis was unreachable, so the provider's bucket is not full)
-- ARGV[19] admit: the probe step in nanoseconds of a caller that has had no answer yet (0 or
--          absent: none). While no limit is known here either, the callers' requests share one
--          probe schedule: the k-th goes step × log2(k) after the first, at the shortest step
--          any caller has given (a step that shrinks moves the start so that the latest probe
--          keeps its time, as Quota::connected_in does).
--
-- Hash fields: e epoch (server microseconds), p paused until, t<i> tat, f<i> floor,
-- l<i> / b<i> the limit and burst last given by a caller (shared learned limits),
-- ps / pn / pq the shared probe's start, the number of requests it has sent and its step,
-- u<i> the amounts
-- probe requests used in a dimension whose limit nobody knew yet (unmetered).
-- A dimension's cell is created when its limit first becomes known: full, except for what the
-- probe sent unmetered, which is charged as if sent just now (the provider's bucket holds it).
-- Times are integer nanoseconds since the epoch, exact in Lua's doubles below 2^53; the epoch
-- moves forward when they pass 2^50 (13 days).
--
-- Returns {wait, t0, t1, t2, t3}: admit's wait in nanoseconds until the request may go (0
-- otherwise) and every dimension's tat afterwards (-1 where no limit is known).

local key = KEYS[1]
local op = ARGV[1]
local margin = tonumber(ARGV[3])
local state = redis.call('HMGET', key, 'e', 'p',
  't0', 't1', 't2', 't3', 'f0', 'f1', 'f2', 'f3',
  'l0', 'l1', 'l2', 'l3', 'b0', 'b1', 'b2', 'b3')
local function num(v) return tonumber(v or 0) or 0 end
local function fmt(x) return string.format('%.0f', x) end

local epoch = state[1]
local fresh = not epoch
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
  epoch = epoch or '0'
else
  local time = redis.call('TIME')
  local micros = tonumber(time[1]) * 1000000 + tonumber(time[2])
  if not epoch then epoch = fmt(micros) end
  now = (micros - tonumber(epoch)) * 1000
end

local paused = num(state[2])
local shifted = 0
local tat, floor, limit, burst = {}, {}, {}, {}
for i = 0, 3 do
  tat[i] = num(state[3 + i])
  floor[i] = num(state[7 + i])
  limit[i] = num(state[11 + i])
  burst[i] = num(state[15 + i])
end

if now > 1125899906842624 then
  -- 2^50 ns: start a new epoch at now; times before it are all "now" to the arithmetic.
  epoch = fmt(tonumber(epoch) + now / 1000)
  paused = math.max(paused - now, 0)
  shifted = now
  for i = 0, 3 do
    tat[i] = math.max(tat[i] - now, 0)
    floor[i] = math.max(floor[i] - now, 0)
  end
  now = 0
end

-- The probe's fields, read only while the probe matters (before a limit is known, and once
-- when a dimension's limit is first learned), so a metered admission reads no more.
local probe = nil
local function probe_state()
  if not probe then
    local v = redis.call('HMGET', key, 'ps', 'pn', 'u0', 'u1', 'u2', 'u3', 'pq')
    probe = {start = math.max(num(v[1]) - shifted, 0), sent = num(v[2]), probing = false,
      unmetered = {[0] = num(v[3]), num(v[4]), num(v[5]), num(v[6])}, step = num(v[7])}
  end
  return probe
end

-- The cell of each dimension (as Gcra::set_rate), from the caller's limits or the shared ones.
local interval, tolerance, amount = {}, {}, {}
for i = 0, 3 do
  local per_minute = tonumber(ARGV[4 + 3 * i])
  local b = tonumber(ARGV[5 + 3 * i])
  amount[i] = tonumber(ARGV[6 + 3 * i])
  if per_minute > 0 then
    limit[i], burst[i] = per_minute, b
  end
  if limit[i] > 0 then
    local pm = math.max(limit[i], 1)
    local units = math.min(math.max(burst[i], 1), pm)
    interval[i] = math.ceil(60000000000 / pm)
    tolerance[i] = math.max(interval[i] * units - margin, interval[i])
    if fresh and ARGV[18] == '1' then
      tat[i] = now + tolerance[i]
    elseif not state[3 + i] then
      tat[i] = now + probe_state().unmetered[i] * interval[i]
    end
  end
end

local wait = 0
if op == 'admit' then
  -- Gcra::earliest over every dimension, then Gcra::commit in all of them at that time.
  local go = math.max(now, paused)
  local metered = false
  for i = 0, 3 do
    if interval[i] then
      metered = true
      local slack = math.max(tolerance[i] - amount[i] * interval[i], 0)
      go = math.max(go, tat[i] - slack)
    end
  end
  local step = tonumber(ARGV[19] or '0') or 0
  if step > 0 and not metered then
    -- Nobody knows a limit yet: one probe schedule for every caller (Quota's probe_go).
    local pr = probe_state()
    pr.probing = true
    if pr.step > 0 and pr.step < step then
      step = pr.step
    end
    if pr.sent == 0 then
      pr.start = go
    else
      if pr.step > step then
        pr.start = pr.start + math.floor((pr.step - step) * math.log(pr.sent) / math.log(2) + 0.5)
      end
      local log2 = math.log(pr.sent + 1) / math.log(2)
      go = math.max(go, pr.start + math.floor(step * log2 + 0.5))
    end
    pr.step = step
    pr.sent = pr.sent + 1
  end
  if step > 0 then
    for i = 0, 3 do
      if not interval[i] then
        local pr = probe_state()
        pr.unmetered[i] = pr.unmetered[i] + amount[i]
      end
    end
  end
  for i = 0, 3 do
    if interval[i] then
      tat[i] = math.max(tat[i], go) + amount[i] * interval[i]
    end
  end
  wait = go - now
elseif op == 'settle' then
  for i = 0, 3 do
    if interval[i] then
      local delta = amount[i] * interval[i]
      if delta < 0 then
        -- Gcra::refund: never below now nor below what the provider reported.
        local lowest = math.min(math.max(now, floor[i]), tat[i])
        tat[i] = math.max(tat[i] + delta, lowest)
      elseif delta > 0 then
        -- Gcra::charge
        tat[i] = math.max(tat[i], now) + delta
      end
    end
  end
elseif op == 'pause' then
  local untill = now + tonumber(ARGV[16])
  local refused = tonumber(ARGV[17])
  paused = math.max(paused, untill)
  for i = 0, 3 do
    if interval[i] and math.floor(refused / 2 ^ i) % 2 == 1 then
      -- Gcra::drain_to(retry cost, until)
      local target = math.max(untill + tolerance[i] - amount[i] * interval[i], 0)
      tat[i] = math.max(tat[i], target)
      floor[i] = math.max(floor[i], target)
    end
  end
else
  return redis.error_reply('paceline quota: unknown operation ' .. tostring(op))
end

local fields = {'e', epoch, 'p', fmt(paused)}
if probe and probe.probing then
  table.insert(fields, 'ps'); table.insert(fields, fmt(probe.start))
  table.insert(fields, 'pn'); table.insert(fields, fmt(probe.sent))
  table.insert(fields, 'pq'); table.insert(fields, fmt(probe.step))
end
for i = 0, 3 do
  if probe and not interval[i] and probe.unmetered[i] > 0 then
    table.insert(fields, 'u' .. i); table.insert(fields, fmt(probe.unmetered[i]))
  end
end
local latest = paused
local reply = {fmt(wait)}
for i = 0, 3 do
  if interval[i] then
    table.insert(fields, 't' .. i); table.insert(fields, fmt(tat[i]))
    table.insert(fields, 'f' .. i); table.insert(fields, fmt(floor[i]))
    table.insert(fields, 'l' .. i); table.insert(fields, fmt(limit[i]))
    table.insert(fields, 'b' .. i); table.insert(fields, fmt(burst[i]))
    latest = math.max(latest, tat[i])
    table.insert(reply, fmt(tat[i]))
  else
    table.insert(reply, '-1')
  end
end
redis.call('HSET', key, unpack(fields))
-- Kept a minute past the last moment it still holds back a request.
redis.call('PEXPIRE', key, math.floor(math.max(latest - now, 0) / 1000000) + 60000)
return reply
