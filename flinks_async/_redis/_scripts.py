"""The Lua scripts the shared rate limit, single-flight and webhook hub run on Redis.

Every script reads Redis' own clock (``TIME``), so the processes' clocks never matter.
Times are milliseconds; ``now`` is Redis' ``TIME`` in milliseconds.
"""

from __future__ import annotations

__all__ = [
    "GIVE_BACK",
    "KEEP",
    "LEASE_OR_RESULT",
    "RELEASE_LEASE",
    "RENEW_LEASES",
    "SEED",
    "STORE_AND_RELEASE",
    "STORE_WEBHOOK",
    "TAKE",
]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""


#: KEYS[1] the slots (sorted set: token -> when the slot frees); ARGV: capacity, hold ms,
#: window ms, how many tokens are given back, how many are dropped, those tokens, then the
#: tokens asking for a slot, in the order they queued (the give-backs of :data:`GIVE_BACK`,
#: carried by a take that happens first: one round trip for all). Gives back and drops;
#: drops the slots whose time has passed; then adds as many of the asking tokens as there
#: are free slots, first come first served, at ``now + hold``. Answers ``{granted, wait}``:
#: how many got a slot (the first ones), and when some did not, the ms until the earliest
#: slot frees (else -1).
TAKE = (
    _NOW
    + """
local cap, hold, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local gives, drops = tonumber(ARGV[4]), tonumber(ARGV[5])
for i = 6, 5 + gives do
  redis.call('ZADD', KEYS[1], 'XX', now + window, ARGV[i])
end
for i = 6 + gives, 5 + gives + drops do
  redis.call('ZREM', KEYS[1], ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local first = 6 + gives + drops
local free = cap - redis.call('ZCARD', KEYS[1])
local granted = 0
for i = first, #ARGV do
  if granted >= free then
    break
  end
  redis.call('ZADD', KEYS[1], now + hold, ARGV[i])
  granted = granted + 1
end
if granted > 0 then
  redis.call('PEXPIRE', KEYS[1], hold * 2)
end
if granted < #ARGV - first + 1 then
  local earliest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {granted, tonumber(earliest[2]) - now}
end
return {granted, -1}
"""
)

#: KEYS[1] the slots; ARGV: window ms, how many tokens are given back, those tokens, then
#: the tokens to drop. A given-back slot frees ``window`` from now (its answer began); a
#: dropped one (its take was cancelled: nothing was sent) frees at once.
GIVE_BACK = (
    _NOW
    + """
local n = tonumber(ARGV[2])
for i = 3, 2 + n do
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i])
end
for i = 3 + n, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
end
return 0
"""
)

#: KEYS[1] the slots, KEYS[2] the peers (sorted set: process id -> when its heartbeat
#: lapses); ARGV: hold ms, process id, heartbeat ms, then the tokens this process holds.
#: Pushes each held slot to ``now + hold`` (never earlier: ``GT``), so a request waiting
#: for a pooled connection or a slow answer keeps its slot however long it takes; records
#: this process's heartbeat; answers how many processes have a live heartbeat.
KEEP = (
    _NOW
    + """
local hold = tonumber(ARGV[1])
for i = 4, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', 'GT', now + hold, ARGV[i])
end
if #ARGV >= 4 then
  redis.call('PEXPIRE', KEYS[1], hold * 2)
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]) * 2)
return redis.call('ZCARD', KEYS[2])
"""
)

#: KEYS[1] the slots; ARGV: hold ms, then pairs (ms from now, token). Adds slots as they
#: stand in a process coming back from its local fallback: its requests in flight and
#: those answered less than a window ago, so the window around the switch holds.
SEED = (
    _NOW
    + """
for i = 2, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[i]), ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
return 0
"""
)

#: KEYS: each lease and its RequestId key; ARGV: lease ms, RequestId ms, then each lease's
#: owner token and the RequestId its run polls ('' for none yet). Extends each lease that
#: is still ours, and records its RequestId for whoever takes the run over (one script for
#: every lease a process holds).
RENEW_LEASES = """
for i = 1, #KEYS / 2 do
  if redis.call('GET', KEYS[2 * i - 1]) == ARGV[2 * i + 1] then
    redis.call('PEXPIRE', KEYS[2 * i - 1], tonumber(ARGV[1]))
    if ARGV[2 * i + 2] ~= '' then
      redis.call('SET', KEYS[2 * i], ARGV[2 * i + 2], 'PX', tonumber(ARGV[2]))
    end
  end
end
return 0
"""

#: KEYS[1] a lease, KEYS[2] its RequestId key; ARGV: owner token, the RequestId the run
#: polls ('' for none), RequestId ms. Gives the lease back if it is still ours, leaving
#: the RequestId for the caller that takes the run over.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] ~= '' then
    redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3]))
  end
  return redis.call('DEL', KEYS[1])
end
return 0
"""

#: KEYS: a lease, its result and its RequestId key, for each of several calls; ARGV: lease
#: ms, then each call's owner token. One round trip for callers arriving at their flights:
#: for each, in order, the stored outcome if there is one (``{1, outcome}``); else the
#: lease, taken for its token if nobody holds it (``{0, rid}``: run the work, resuming
#: the RequestId ``rid`` an earlier owner left, '' for none); else ``{2, rid}`` (another
#: process runs it: wait). Atomic, so a lease is never taken just after an outcome was
#: stored.
LEASE_OR_RESULT = """
local out = {}
for i = 1, #KEYS / 3 do
  local stored = redis.call('GET', KEYS[3 * i - 1])
  if stored then
    out[i] = {1, stored}
  else
    local rid = redis.call('GET', KEYS[3 * i]) or ''
    if redis.call('SET', KEYS[3 * i - 2], ARGV[i + 1], 'NX', 'PX', tonumber(ARGV[1])) then
      out[i] = {0, rid}
    else
      out[i] = {2, rid}
    end
  end
end
return out
"""

#: KEYS: a lease, its result and its RequestId key, for each of several calls; ARGV: for
#: each, the owner token, the outcome and its ttl ms. Stores each outcome, then, if the
#: lease is still ours, gives it back and forgets the RequestId (the run is over): one
#: round trip for them all.
STORE_AND_RELEASE = """
for i = 1, #KEYS / 3 do
  local token, outcome, ttl = ARGV[3 * i - 2], ARGV[3 * i - 1], tonumber(ARGV[3 * i])
  redis.call('SET', KEYS[3 * i - 1], outcome, 'PX', ttl)
  if redis.call('GET', KEYS[3 * i - 2]) == token then
    redis.call('DEL', KEYS[3 * i - 2], KEYS[3 * i])
  end
end
return 0
"""

#: KEYS: the delivery's "seen" marker, its RequestId's body key, the stream; ARGV: seen ms,
#: the body, the RequestId's hash ('' for no data answer), retention ms, '1' to add it to
#: the stream, the wake-up channel. Stores a delivery once (0 when its marker was there
#: already: a repeat), atomically: marker, body, stream entry and wake-up together.
STORE_WEBHOOK = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', tonumber(ARGV[1])) then
  return 0
end
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[4]))
end
if ARGV[5] == '1' then
  redis.call('XADD', KEYS[3], '*', 'body', ARGV[2])
end
if ARGV[3] ~= '' then
  redis.call('PUBLISH', ARGV[6], ARGV[3])
end
return 1
"""
