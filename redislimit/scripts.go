package redislimit

import (
	"strconv"
	"strings"
	"time"

	"github.com/payretry/payretry"
	"github.com/redis/go-redis/v9"
)

// redislimit's own numbers, which payretry's in-process limiter does not
// need. The pacing rules' numbers are payretry.Pacing's (see commonArgs).
const (
	// windowTolerance: two replicas that read the same window's reset time
	// anchor it on Redis time a few milliseconds apart (the time between
	// their clock read and the script); resets this close are the same
	// window. Providers give resets in whole seconds.
	windowTolerance = 250 * time.Millisecond
	// boundaryGuard: a request sent this close to the window's reset may
	// reach the provider after it, so it counts in the next window too (the
	// carry). The in-process limiter has no guard: here the reset is
	// anchored on Redis time one Observe round trip late, and under load
	// (measured with -race on two busy cores) the few requests sent in
	// that gap landed in the next window and made its 101st request a 429,
	// whose Retry-After then held every replica for a second.
	boundaryGuard = 50 * time.Millisecond
	// maxOutageWindow is the most requests the scripts judge for an
	// outage: Lua's bit operations work on 32 bits.
	maxOutageWindow = 32
)

// Wait sources as the scripts return them. srcWindow is a spent window,
// which the caller sees as payretry.WaitRateLimit; unlike a token bucket's
// wait it holds every request of the scope, so a replica may remember it.
const (
	srcNone = iota
	srcRetryAfter
	srcRateLimit
	srcOutage
	srcWindow
)

// The scripts work in microseconds of Redis server time (TIME), so that the
// replicas' clocks never meet: every instant a replica knows (a Retry-After,
// a window reset) arrives as a duration from the replica's `now` and is
// anchored on Redis time here. Numbers are written with %d: Lua's own
// number-to-string conversion keeps 14 digits, fewer than a time in µs has.
//
// Scope state, one hash per scope (KEYS[1]); a missing field means "none":
//
//	hold      no request before this instant (Retry-After)
//	limit     requests per window, as the provider last said; -1 unknown
//	reset     end of the current window; 0 unknown
//	sent      requests sent in the current window, by all replicas
//	used      limit - remaining, as the provider last said for this window
//	outcomes  the ends of the scope's last requests as bits, 1 for a
//	          failure, the latest lowest (see payretry.Pacing.Record)
//	down      1 while the scope is down
//	probe     while down: when the next probe may go
//	prev      the reset of the window that rolled last, to tell its late
//	          responses from the next window's
//	carry     requests sent within boundaryGuard of the reset: they count
//	          in the next window too
//	lastfail  when the latest failure was observed, so that a success
//	          carried late by a Take (see observation) does not bring up
//	          a scope that failures after it took down
//
// A token bucket (GCRA) is one string key per provider and limit name: its
// theoretical arrival time (tat). It expires when the bucket is full again,
// so an expired key and a full bucket are the same thing.
//
// Every script takes first the arguments that commonArgs returns:
// the idle TTL (ms) and the numbers of payretry.Pacing it needs, so that
// they are the root package's, never a copy in the Lua text:
//
//	ARGV[1]  idle TTL (ms)
//	ARGV[2]  Pacing.HoldMargin (µs)
//	ARGV[3]  Pacing.DefaultHold (µs)
//	ARGV[4]  Pacing.ProbeInterval (µs)
//	ARGV[5]  Pacing.OutageWindow (requests, at most maxOutageWindow)
//	ARGV[6]  Pacing.OutageFailures
//
// An observation is observationArgs (ten) arguments, from ARGV[i] on:
//
//	i    1 if it has a Retry-After; i+1 its end from now (µs)
//	i+2  the window's limit, -1 if not said
//	i+3  1 if it has a reset time; i+4 the reset from now (µs)
//	i+5  remaining, -1 if not said
//	i+6  "f" failed, "o" answered normally or throttled, "" neither
//	i+7  cool-down (µs), 0 for the probe interval
//	i+8  its age (µs): how long before now the response came
//	i+9  the requests it stands for: one, or the successes a Take carries
//
// Both scripts return, last, 1 when the scope is quiet (no failure among
// its last requests, not down), else 0.
const luaCommon = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function d(x) return string.format('%d', x) end
local ttl = tonumber(ARGV[1])
local holdMargin, defaultHold, probeInterval = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
-- window: a 1 bit for each of the last OutageWindow requests (2^32 - 1 is -1 in 32 bits).
local window, outageFailures = bit.tobit(2 ^ tonumber(ARGV[5]) - 1), tonumber(ARGV[6])
local f = redis.call('HMGET', KEYS[1], 'hold', 'limit', 'reset', 'sent', 'used', 'outcomes', 'down', 'probe', 'prev', 'carry', 'lastfail')
local hold = tonumber(f[1]) or 0
local limit = tonumber(f[2]) or -1
local reset = tonumber(f[3]) or 0
local sent = tonumber(f[4]) or 0
local used = tonumber(f[5]) or 0
local outcomes = tonumber(f[6]) or 0
local down = tonumber(f[7]) or 0
local probe = tonumber(f[8]) or 0
local prev = tonumber(f[9]) or 0
local carry = tonumber(f[10]) or 0
local lastfail = tonumber(f[11]) or 0
local function save()
  redis.call('HSET', KEYS[1], 'hold', d(hold), 'limit', d(limit), 'reset', d(reset), 'sent', d(sent),
    'used', d(used), 'outcomes', d(outcomes), 'down', d(down), 'probe', d(probe), 'prev', d(prev),
    'carry', d(carry), 'lastfail', d(lastfail))
  -- Kept until the last instant it knows, plus the idle TTL.
  local last = math.max(hold, reset, probe, now)
  redis.call('PEXPIRE', KEYS[1], d(math.ceil((last - now) / 1000) + ttl))
end
local function quiet()
  if outcomes == 0 and down == 0 then return 1 end
  return 0
end
-- record adds n ends of requests, failed or not, to outcomes, as payretry's
-- Pacing.Record does one, and returns the failures among the last requests.
local function record(failed, n)
  if n >= 32 then outcomes = 0 else outcomes = bit.lshift(outcomes, n) end
  if failed then outcomes = bit.bor(outcomes, 1) end
  outcomes = bit.band(outcomes, window)
  local m, ones = outcomes, 0
  while m ~= 0 do ones, m = ones + bit.band(m, 1), bit.rshift(m, 1) end
  return ones
end
-- observe records the observation at ARGV[i..i+9], as payretry's
-- in-process limiter does in its Observe.
local function observe(i)
  local hasRetry, retryIn = ARGV[i] == '1', tonumber(ARGV[i + 1])
  local sigLimit = tonumber(ARGV[i + 2])
  local hasReset, resetIn = ARGV[i + 3] == '1', tonumber(ARGV[i + 4])
  local remaining = tonumber(ARGV[i + 5])
  local kind, cool, age, n = ARGV[i + 6], tonumber(ARGV[i + 7]), tonumber(ARGV[i + 8]), tonumber(ARGV[i + 9])
  if hasRetry and now + retryIn > hold then hold = now + retryIn end
  if sigLimit >= 0 then limit = sigLimit end
  if hasReset and resetIn > 0 then
    -- A reset in the past belongs to a window that already rolled.
    local r = now + resetIn
    local same = true
    if r <= prev + WINDOW_TOLERANCE or (reset > 0 and r < reset - WINDOW_TOLERANCE) then
      same = false -- a window that rolled already, late news
    elseif reset == 0 or r > reset + WINDOW_TOLERANCE then
      reset, used = r, 0
    end
    if same and remaining >= 0 and limit >= 0 then used = math.max(used, limit - remaining) end
    -- Spent, by a window whose size is not said: held until its reset.
    if remaining == 0 and limit < 0 and r > hold then hold = r end
  elseif not hasReset and remaining == 0 and not hasRetry then
    if now + defaultHold > hold then hold = now + defaultHold end
  end
  if kind == 'f' then
    lastfail = now
    local w = cool
    if w <= 0 then w = probeInterval end
    if record(true, 1) >= outageFailures and down == 0 then
      down, probe = 1, now + w
    elseif down == 1 and cool > 0 then
      probe = now + w -- a failed probe: the next after the cool-down
    end
  elseif kind == 'o' then
    if down == 1 and now - age >= lastfail then
      -- An answer, even a 429: the provider is up.
      down, outcomes = 0, 0
    else
      -- Each success shifts a 0 in. Successes carried late by a Take
      -- (see Limiter.Observe) that came before a failure observed since
      -- do not bring the scope up nor clear the failures after them:
      -- each is one of the last requests, counted as the newest (which
      -- counts the same failures as its true place, while it is among
      -- the last requests).
      record(false, n)
    end
  end
end
`

// takeScript is Limiter.Take: an observation carried along (see
// Limiter.Observe), then the hold, the outage probe, the window and the
// token buckets, all or nothing, exactly in the order of payretry's
// in-process limiter.
//
//	KEYS[1]   scope state; KEYS[2..] token buckets
//	ARGV[1..C]  the common arguments (C = len(commonArgs))
//	ARGV[C+1]   the replica's own adaptive-rate wait (µs), 0 if none
//	ARGV[C+2]   1 if an observation follows in ARGV[C+3..C+2+O], else 0
//	            (O = observationArgs)
//	ARGV[B+2i-1], ARGV[B+2i]   bucket i: emission interval (µs), burst
//	            (B = C+2+O)
//
// It returns {wait µs, source, quiet, next}: next is how long until the
// token buckets have a token again (µs; 0 if one is left), -1 when the hold,
// the outage or the window answered before the buckets were looked at.
var takeScript = redis.NewScript(scriptConsts(luaCommon + `
local dirty = false
if ARGV[COMMON_ARGS + 2] == '1' then observe(COMMON_ARGS + 3); dirty = true end
local b = COMMON_ARGS + 2 + OBSERVATION_ARGS
if now < hold then
  if dirty then save() end
  return {hold - now, SRC_RETRY_AFTER, quiet(), -1}
end
local probing = false
if down == 1 then
  if now < probe then
    if dirty then save() end
    return {probe - now, SRC_OUTAGE, 0, -1}
  end
  probing = true
end
if reset > 0 and now >= reset then
  -- The window rolled: its count starts again; the next response tells
  -- when the new one ends. A limit of 0 held the scope until the reset,
  -- not for ever: a request may go to learn the next.
  reset, sent, used, prev, carry, dirty = 0, carry, 0, reset, 0, true
  if limit == 0 then limit = -1 end
end
if limit >= 0 and math.max(sent, used) >= limit then
  if reset == 0 then reset, dirty = now + defaultHold, true end
  if dirty then save() end
  return {reset - now + holdMargin, SRC_WINDOW, quiet(), -1}
end
local wait = tonumber(ARGV[COMMON_ARGS + 1])
local tats = {}
for i = 1, #KEYS - 1 do
  local T = tonumber(ARGV[b + 2 * i - 1])
  local burst = tonumber(ARGV[b + 2 * i])
  local tat = math.max(tonumber(redis.call('GET', KEYS[i + 1])) or now, now)
  -- Full bucket: tat <= now. A request may go while at least one token is
  -- left, that is while tat - now <= (burst - 1) * T.
  local allow = tat - (burst - 1) * T
  if allow > now then wait = math.max(wait, allow - now) end
  tats[i] = tat + T
end
if wait > 0 then
  if dirty then save() end
  return {math.ceil(wait), SRC_RATE_LIMIT, quiet(), math.ceil(wait)}
end
-- next: when the buckets have a token again after this one, 0 if now.
local next = 0
for i = 1, #KEYS - 1 do
  local tat = math.ceil(tats[i])
  redis.call('SET', KEYS[i + 1], d(tat), 'PX', d(math.ceil((tat - now) / 1000) + 1))
  next = math.max(next, tat - (tonumber(ARGV[b + 2 * i]) - 1) * tonumber(ARGV[b + 2 * i - 1]) - now)
end
sent = sent + 1
if reset > 0 and now >= reset - BOUNDARY_GUARD then carry = carry + 1 end
if probing then probe = now + probeInterval end
save()
if probing then return {0, SRC_OUTAGE, 0, math.ceil(next)} end
return {0, SRC_NONE, quiet(), math.ceil(next)}
`))

// observeScript is Limiter.Observe: the common arguments, then the
// observation. It returns {quiet}.
var observeScript = redis.NewScript(scriptConsts(luaCommon + `
observe(COMMON_ARGS + 1)
save()
return {quiet()}
`))

// commonArgs returns the arguments every script takes first: the idle TTL
// and the numbers of p that the scripts need (see luaCommon).
func commonArgs(ttl time.Duration, p payretry.Pacing) []any {
	return []any{
		max(1, ttl.Milliseconds()),
		ceilMicros(p.HoldMargin), ceilMicros(p.DefaultHold), ceilMicros(p.ProbeInterval),
		min(max(p.OutageWindow, 1), maxOutageWindow), p.OutageFailures,
	}
}

// numCommonArgs is len(commonArgs(...)).
const numCommonArgs = 6

// scriptConsts writes redislimit's own constants into a script's source:
// the wait sources, the argument layout and the window's tolerances. The
// pacing numbers come as arguments (see commonArgs).
func scriptConsts(src string) string {
	us := func(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) }
	return strings.NewReplacer(
		"SRC_NONE", strconv.Itoa(srcNone),
		"SRC_RETRY_AFTER", strconv.Itoa(srcRetryAfter),
		"SRC_RATE_LIMIT", strconv.Itoa(srcRateLimit),
		"SRC_OUTAGE", strconv.Itoa(srcOutage),
		"SRC_WINDOW", strconv.Itoa(srcWindow),
		"COMMON_ARGS", strconv.Itoa(numCommonArgs),
		"OBSERVATION_ARGS", strconv.Itoa(observationArgs),
		"WINDOW_TOLERANCE", us(windowTolerance),
		"BOUNDARY_GUARD", us(boundaryGuard),
	).Replace(src)
}
