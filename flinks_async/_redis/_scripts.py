"""The Lua scripts the shared rate limit and single-flight run on Redis.

Every script reads Redis' own clock (``TIME``), so the processes' clocks never matter.
Times are milliseconds; ``now`` is Redis' ``TIME`` in milliseconds.
"""

from __future__ import annotations

__all__ = [
    "GIVE_BACK",
    "KEEP",
    "LEASE_OR_RESULT",
    "RELEASE_LEASE",
    "RENEW_LEASE",
    "SEED",
    "STORE_AND_RELEASE",
    "TAKE",
]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""


def _giving_back(at: int) -> str:
    """Lua giving back the slots named from ``ARGV[at]`` on: ``ARGV[at]`` the window ms,
    ``ARGV[at + 1]`` how many tokens are given back, those tokens, then the tokens to drop
    (to the end). A given-back slot frees ``window`` from now; a dropped one at once."""
    return f"""
local n = tonumber(ARGV[{at + 1}])
for i = {at + 2}, {at + 1} + n do
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[{at}]), ARGV[i])
end
for i = {at + 2} + n, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
end
"""


#: KEYS[1] the slots (sorted set: token -> when the slot frees); ARGV: capacity, hold ms,
#: token, window ms, how many tokens are given back, those tokens, then the tokens to drop
#: (the give-backs of :data:`GIVE_BACK`, carried by a take that happens first: one round
#: trip for both). Gives back and drops; drops the slots whose time has passed; if fewer
#: than capacity remain, adds ours at ``now + hold`` and answers -1; else answers the ms
#: until the earliest slot frees.
TAKE = (
    _NOW
    + _giving_back(4)
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
  return -1
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tonumber(first[2]) - now
"""
)

#: KEYS[1] the slots; ARGV: window ms, how many tokens are given back, those tokens, then
#: the tokens to drop. A given-back slot frees ``window`` from now (its answer began); a
#: dropped one (its take was cancelled: nothing was sent) frees at once.
GIVE_BACK = _NOW + _giving_back(1) + "return 0\n"

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

#: KEYS[1] a lease; ARGV: owner token, lease ms. Extends the lease if it is still ours.
RENEW_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""

#: KEYS[1] a lease; ARGV: owner token. Deletes the lease if it is still ours.
RELEASE_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

#: KEYS[1] a lease, KEYS[2] its result; ARGV: owner token, lease ms. One round trip for a
#: caller arriving at a flight: the stored outcome if there is one (``{1, outcome}``); else
#: the lease, taken for this token if nobody holds it (``{0}``: run the work); else
#: ``{2}`` (another process runs it: wait). Atomic, so a lease is never taken just after
#: an outcome was stored.
LEASE_OR_RESULT = """
local stored = redis.call('GET', KEYS[2])
if stored then
  return {1, stored}
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', tonumber(ARGV[2])) then
  return {0}
end
return {2}
"""

#: KEYS[1] a lease, KEYS[2] its result; ARGV: owner token, the outcome, its ttl ms. Stores
#: the outcome, then gives the lease back if it is still ours: one round trip.
STORE_AND_RELEASE = """
redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3]))
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
"""
