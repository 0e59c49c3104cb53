-- dpproxy ledger: one privacy-budget charge, atomically.
--
-- Checks the budget, debits the account and appends one hash-chained entry to
-- the analyst's audit stream, or does nothing at all. All keys share the hash
-- tag {analyst}, so this runs on one Redis Cluster slot.
--
-- KEYS[1]  account hash  (spent_eps, spent_delta, budget_eps, budget_delta, queries, seq, head)
-- KEYS[2]  audit stream  (entry IDs "<seq>-0"; fields body, prev, hash, spent_eps, spent_delta, queries)
-- KEYS[3]  charge-id hash (charge id -> "seq eps delta spent_eps spent_delta budget_eps budget_delta queries")
-- ARGV[1]  charge id
-- ARGV[2]  epsilon units (charge, rounded up)     ARGV[3] delta units
-- ARGV[4]  budget epsilon units (rounded down)    ARGV[5] budget delta units
-- ARGV[6]  canonical entry body (JSON)            ARGV[7] hex SHA-256 of ARGV[6]
--
-- Returns {"dup", <stored result>}, {"budget", spent_eps, spent_delta} or
-- {"ok", seq, spent_eps, spent_delta, queries, hash}. All amounts are integers
-- below 2^53, exact in Lua numbers; they are formatted with %.0f.
--
-- The chain link (see chain.go) is, with prev and digest as 32 raw bytes,
--   hash = hex(SHA-256(prev .. digest .. seq .. "\n" .. spent_eps .. "\n" .. spent_delta .. "\n" .. queries))
-- Redis Lua has no SHA-256, so it is implemented below with the bit library.

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
local id = ARGV[1]
local eps, delta = tonumber(ARGV[2]), tonumber(ARGV[3])
local budget_eps, budget_delta = tonumber(ARGV[4]), tonumber(ARGV[5])
local body, digest = ARGV[6], ARGV[7]

local done = redis.call("HGET", ids, id)
if done then
  return {"dup", done}
end

local st = redis.call("HMGET", acct, "spent_eps", "spent_delta", "queries", "seq", "head")
local spent_eps = tonumber(st[1] or "0")
local spent_delta = tonumber(st[2] or "0")
local queries = tonumber(st[3] or "0")
local seq = tonumber(st[4] or "0")
local prev = st[5] or "0000000000000000000000000000000000000000000000000000000000000000"

if spent_eps + eps > budget_eps or spent_delta + delta > budget_delta then
  return {"budget", n(spent_eps), n(spent_delta)}
end

spent_eps = spent_eps + eps
spent_delta = spent_delta + delta
queries = queries + 1
seq = seq + 1
local hash = sha256hex(fromhex(prev) .. fromhex(digest) .. n(seq) .. "\n" .. n(spent_eps) .. "\n" .. n(spent_delta) .. "\n" .. n(queries))

redis.call("XADD", log, n(seq) .. "-0",
  "body", body, "prev", prev, "hash", hash,
  "spent_eps", n(spent_eps), "spent_delta", n(spent_delta), "queries", n(queries))
redis.call("HSET", acct,
  "spent_eps", n(spent_eps), "spent_delta", n(spent_delta),
  "budget_eps", n(budget_eps), "budget_delta", n(budget_delta),
  "queries", n(queries), "seq", n(seq), "head", hash)
redis.call("HSET", ids, id, table.concat({n(seq), n(eps), n(delta), n(spent_eps), n(spent_delta),
  n(budget_eps), n(budget_delta), n(queries)}, " "))
return {"ok", n(seq), n(spent_eps), n(spent_delta), n(queries), hash}
