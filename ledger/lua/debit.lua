-- dpproxy ledger: one privacy-budget charge, or one admin grant, atomically.
--
-- A charge checks every budget level it draws on (the analyst's own, and
-- shared team / dataset budgets, each in the bucket of its period), debits
-- each account once and appends one hash-chained entry to the analyst's
-- audit stream, or does nothing at all. The Go twin of this logic is
-- engine.go (account.fits, account.add); keep them in step. All keys must
-- share one hash slot on Redis Cluster (RedisStore chooses them so).
--
-- KEYS[1]  the analyst's account hash: the lifetime state (fields below) and
--          the chain head (seq, head)
-- KEYS[2]  audit stream  (entry IDs "<seq>-0"; fields body, prev, hash, spent_eps, spent_delta, queries)
-- KEYS[3]  charge-id hash (charge id -> "seq kind eps delta <state of level 1>")
-- KEYS[3+i] state hash of level i (i = 1..n); may be KEYS[1]
-- ARGV[1]  "charge" or "grant"          ARGV[2] charge id
-- ARGV[3]  epsilon units                ARGV[4] delta units (signed for grants)
-- ARGV[5]  canonical entry body (JSON)  ARGV[6] hex SHA-256 of ARGV[5]
-- ARGV[7]  accounting mode, "basic" or "rdp"
-- ARGV[8]  n, the number of levels (1 for a grant)
-- ARGV[7+2i], ARGV[8+2i]  budget epsilon and delta units of level i (rounded down)
-- charge, mode "rdp", with b = 8+2n:
--   ARGV[b+1], ARGV[b+2]   epsilon and delta units accounted outside the RDP sums
--   ARGV[b+2+j]            RDP units of the charge at order j (j = 1..13)
--   ARGV[b+15+j]           shift(alpha_j), ARGV[b+28+j] inv(alpha_j) (engine.go rdpConv)
-- charge, last: the number of answers it records (1 + its repeats), added
--   to queries.
-- grant: ARGV[11..14] expected spent_eps, spent_delta, grant_eps, grant_delta
--   of the level ("" skips the check; a reset uses it to apply to the state
--   it was computed from, else returns {"retry"}).
--
-- State fields: spent_eps spent_delta queries grant_eps grant_delta x_eps
-- x_delta budget_eps budget_delta, and in mode "rdp" r1..r13.
--
-- Returns {"dup", <stored result>}, {"budget", <level index from 0>, <state>},
-- {"retry"} or {"ok", seq, hash, <state of level 1 after>}; a state is its
-- fields in the order above, space-separated. All amounts are integers
-- below 2^53, exact in Lua numbers; they are formatted with %.0f.
--
-- The chain link (see chain.go) is, with prev and digest as 32 raw bytes,
--   hash = hex(SHA-256(prev .. digest .. seq .. "\n" .. spent_eps .. "\n" .. spent_delta .. "\n" .. queries))
-- over the analyst's lifetime totals after the entry. Redis Lua has no
-- SHA-256, so it is implemented below with the bit library.

local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
local rshift, lshift, ror, tobit, tohex = bit.rshift, bit.lshift, bit.ror, bit.tobit, bit.tohex

local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}
for i = 1, 64 do K[i] = tobit(K[i]) end

-- sha256hex returns the lowercase hex SHA-256 (FIPS 180-4) of msg.
local function sha256hex(msg)
  local H = {
    tobit(0x6a09e667), tobit(0xbb67ae85), tobit(0x3c6ef372), tobit(0xa54ff53a),
    tobit(0x510e527f), tobit(0x9b05688c), tobit(0x1f83d9ab), tobit(0x5be0cd19),
  }
  local bits = #msg * 8
  local hi, lo = math.floor(bits / 4294967296), bits % 4294967296
  msg = msg .. "\128" .. string.rep("\0", (55 - #msg) % 64)
    .. string.char(band(rshift(hi, 24), 255), band(rshift(hi, 16), 255), band(rshift(hi, 8), 255), band(hi, 255))
    .. string.char(band(rshift(lo, 24), 255), band(rshift(lo, 16), 255), band(rshift(lo, 8), 255), band(lo, 255))
  local w = {}
  for chunk = 1, #msg, 64 do
    for i = 0, 15 do
      local b1, b2, b3, b4 = string.byte(msg, chunk + i * 4, chunk + i * 4 + 3)
      w[i] = bor(lshift(b1, 24), lshift(b2, 16), lshift(b3, 8), b4)
    end
    for i = 16, 63 do
      local w15, w2 = w[i - 15], w[i - 2]
      local s0 = bxor(ror(w15, 7), ror(w15, 18), rshift(w15, 3))
      local s1 = bxor(ror(w2, 17), ror(w2, 19), rshift(w2, 10))
      w[i] = tobit(w[i - 16] + s0 + w[i - 7] + s1)
    end
    local a, b, c, d, e, f, g, h = H[1], H[2], H[3], H[4], H[5], H[6], H[7], H[8]
    for i = 0, 63 do
      local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
      local ch = bxor(band(e, f), band(bnot(e), g))
      local t1 = h + S1 + ch + K[i + 1] + w[i]
      local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
      local maj = bxor(band(a, b), band(a, c), band(b, c))
      h, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + S0 + maj)
    end
    H[1], H[2], H[3], H[4] = tobit(H[1] + a), tobit(H[2] + b), tobit(H[3] + c), tobit(H[4] + d)
    H[5], H[6], H[7], H[8] = tobit(H[5] + e), tobit(H[6] + f), tobit(H[7] + g), tobit(H[8] + h)
  end
  local out = {}
  for i = 1, 8 do out[i] = tohex(H[i], 8) end
  return table.concat(out)
end

local function n(x) return string.format("%.0f", x) end

local function fromhex(h)
  return (string.gsub(h, "..", function(cc) return string.char(tonumber(cc, 16)) end))
end

-- Self-test hook for the Go tests: EVAL with no keys and ARGV = {"sha256", msg}.
if #KEYS == 0 and ARGV[1] == "sha256" then
  return sha256hex(ARGV[2])
end

local acct, log, ids = KEYS[1], KEYS[2], KEYS[3]
local kind, id = ARGV[1], ARGV[2]
local eps, delta = tonumber(ARGV[3]), tonumber(ARGV[4])
local body, digest = ARGV[5], ARGV[6]
local mode, nl = ARGV[7], tonumber(ARGV[8])
local NR, CAP = 13, 4000000000000000

local done = redis.call("HGET", ids, id)
if done then
  return {"dup", done}
end

local fields = {"spent_eps", "spent_delta", "queries", "grant_eps", "grant_delta", "x_eps", "x_delta", "budget_eps", "budget_delta"}
if mode == "rdp" then
  for j = 1, NR do fields[#fields + 1] = "r" .. j end
end

local cache, order = {}, {}
local function load(key)
  local st = cache[key]
  if st then return st end
  local v = redis.call("HMGET", key, unpack(fields))
  st = {}
  for i, f in ipairs(fields) do st[f] = tonumber(v[i] or "0") end
  cache[key] = st
  order[#order + 1] = key
  return st
end

local function ser(st)
  local out = {}
  for i, f in ipairs(fields) do out[i] = n(st[f]) end
  return table.concat(out, " ")
end

local life = load(acct)
local head = redis.call("HMGET", acct, "seq", "head")
local seq = tonumber(head[1] or "0")
local prev = head[2] or "0000000000000000000000000000000000000000000000000000000000000000"

local first
if kind == "charge" then
  local b = 8 + 2 * nl
  local queries = tonumber(ARGV[#ARGV])
  local xe, xd, cr, shift, inv = 0, 0, {}, {}, {}
  if mode == "rdp" then
    xe, xd = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
    for j = 1, NR do
      cr[j] = tonumber(ARGV[b + 2 + j])
      shift[j] = tonumber(ARGV[b + 15 + j])
      inv[j] = tonumber(ARGV[b + 28 + j])
    end
  end
  -- fits mirrors account.fits in engine.go.
  local function fits(st, be, bd)
    be = math.max(0, be + st.grant_eps)
    bd = math.max(0, bd + st.grant_delta)
    if st.spent_eps + eps <= be and st.spent_delta + delta <= bd then return true end
    if mode ~= "rdp" then return false end
    local x = st.x_delta + xd
    if x >= bd then return false end
    local ld = math.log((bd - x) * 1e-15)
    local best = math.huge
    for j = 1, NR do
      local r = math.min(st["r" .. j] + cr[j], CAP)
      local e = r / 1e9 + shift[j] - ld * inv[j]
      if e < best then best = e end
    end
    local u = 0
    if best > 0 then u = math.min(math.ceil(best * 1e9), CAP) end
    return st.x_eps + xe + u <= be
  end
  local levels = {}
  for i = 1, nl do
    local st = load(KEYS[3 + i])
    local be, bd = tonumber(ARGV[7 + 2 * i]), tonumber(ARGV[8 + 2 * i])
    if not fits(st, be, bd) then
      return {"budget", tostring(i - 1), ser(st)}
    end
    levels[i] = {st, be, bd}
  end
  -- Debit every distinct account once (KEYS[4] may be the lifetime account).
  for _, key in ipairs(order) do
    local st = cache[key]
    st.spent_eps = st.spent_eps + eps
    st.spent_delta = st.spent_delta + delta
    st.queries = st.queries + queries
    if mode == "rdp" then
      st.x_eps, st.x_delta = st.x_eps + xe, st.x_delta + xd
      for j = 1, NR do st["r" .. j] = math.min(st["r" .. j] + cr[j], CAP) end
    end
  end
  life.budget_eps, life.budget_delta = levels[1][2], levels[1][3]
  for i = 1, nl do
    levels[i][1].budget_eps, levels[i][1].budget_delta = levels[i][2], levels[i][3]
  end
  first = levels[1][1]
elseif kind == "grant" then
  local st = load(KEYS[4])
  if ARGV[11] ~= "" then
    if st.spent_eps ~= tonumber(ARGV[11]) or st.spent_delta ~= tonumber(ARGV[12])
      or st.grant_eps ~= tonumber(ARGV[13]) or st.grant_delta ~= tonumber(ARGV[14]) then
      return {"retry"}
    end
  end
  st.grant_eps = st.grant_eps + eps
  st.grant_delta = st.grant_delta + delta
  first = st
else
  return redis.error_reply("unknown kind " .. kind)
end

seq = seq + 1
local hash = sha256hex(fromhex(prev) .. fromhex(digest) .. n(seq) .. "\n" .. n(life.spent_eps) .. "\n" .. n(life.spent_delta) .. "\n" .. n(life.queries))

redis.call("XADD", log, n(seq) .. "-0",
  "body", body, "prev", prev, "hash", hash,
  "spent_eps", n(life.spent_eps), "spent_delta", n(life.spent_delta), "queries", n(life.queries))
for _, key in ipairs(order) do
  local st, kv = cache[key], {}
  for _, f in ipairs(fields) do
    kv[#kv + 1] = f
    kv[#kv + 1] = n(st[f])
  end
  if key == acct then
    kv[#kv + 1] = "seq"
    kv[#kv + 1] = n(seq)
    kv[#kv + 1] = "head"
    kv[#kv + 1] = hash
  end
  redis.call("HSET", key, unpack(kv))
end
local res = ser(first)
redis.call("HSET", ids, id, table.concat({n(seq), kind, n(eps), n(delta), res}, " "))
return {"ok", n(seq), hash, res}
