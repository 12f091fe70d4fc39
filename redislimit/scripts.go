package redislimit

import (
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Constants of payretry's in-process limiter, which this one mirrors
// (throttle.go: holdMargin, defaultHold, outageThreshold, probeInterval).
const (
	holdMargin      = 5 * time.Millisecond
	defaultHold     = time.Second
	outageThreshold = 5
	probeInterval   = 100 * time.Millisecond
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
)

// Wait sources as the scripts return them.
const (
	srcNone = iota
	srcRetryAfter
	srcRateLimit
	srcOutage
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
//	failures  failures in a row
//	down      1 while the scope is down (failures >= 5)
//	probe     while down: when the next probe may go
//	prev      the reset of the window that rolled last, to tell its late
//	          responses from the next window's
//	carry     requests sent within boundaryGuard of the reset: they count
//	          in the next window too
//
// A token bucket (GCRA) is one string key per provider and limit name: its
// theoretical arrival time (tat). It expires when the bucket is full again,
// so an expired key and a full bucket are the same thing.
const luaCommon = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function d(x) return string.format('%d', x) end
local f = redis.call('HMGET', KEYS[1], 'hold', 'limit', 'reset', 'sent', 'used', 'failures', 'down', 'probe', 'prev', 'carry')
local hold = tonumber(f[1]) or 0
local limit = tonumber(f[2]) or -1
local reset = tonumber(f[3]) or 0
local sent = tonumber(f[4]) or 0
local used = tonumber(f[5]) or 0
local failures = tonumber(f[6]) or 0
local down = tonumber(f[7]) or 0
local probe = tonumber(f[8]) or 0
local prev = tonumber(f[9]) or 0
local carry = tonumber(f[10]) or 0
local function save(ttl)
  redis.call('HSET', KEYS[1], 'hold', d(hold), 'limit', d(limit), 'reset', d(reset), 'sent', d(sent),
    'used', d(used), 'failures', d(failures), 'down', d(down), 'probe', d(probe), 'prev', d(prev), 'carry', d(carry))
  -- Kept until the last instant it knows, plus the idle TTL.
  local last = math.max(hold, reset, probe, now)
  redis.call('PEXPIRE', KEYS[1], d(math.ceil((last - now) / 1000) + ttl))
end
`

// takeScript is Limiter.Take: the hold, the outage probe, the window, then
// the token buckets, all or nothing, exactly in the order of payretry's
// in-process limiter.
//
//	KEYS[1]   scope state; KEYS[2..] token buckets
//	ARGV[1]   the replica's own adaptive-rate wait (µs), 0 if none
//	ARGV[2]   idle TTL (ms)
//	ARGV[2i+1], ARGV[2i+2]   bucket i: emission interval (µs), burst
//
// It returns {wait µs, source}.
var takeScript = redis.NewScript(scriptConsts(luaCommon + `
local ttl = tonumber(ARGV[2])
if now < hold then return {hold - now, SRC_RETRY_AFTER} end
local probing = false
if down == 1 then
  if now < probe then return {probe - now, SRC_OUTAGE} end
  probing = true
end
local dirty = false
if reset > 0 and now >= reset then
  -- The window rolled: its count starts again; the next response tells
  -- when the new one ends.
  reset, sent, used, prev, carry, dirty = 0, carry, 0, reset, 0, true
end
if limit >= 0 and math.max(sent, used) >= limit then
  if reset == 0 then reset, dirty = now + DEFAULT_HOLD, true end
  if dirty then save(ttl) end
  return {reset - now + HOLD_MARGIN, SRC_RATE_LIMIT}
end
local wait = tonumber(ARGV[1])
local tats = {}
for i = 1, #KEYS - 1 do
  local T = tonumber(ARGV[2 * i + 1])
  local burst = tonumber(ARGV[2 * i + 2])
  local tat = math.max(tonumber(redis.call('GET', KEYS[i + 1])) or now, now)
  -- Full bucket: tat <= now. A request may go while at least one token is
  -- left, that is while tat - now <= (burst - 1) * T.
  local allow = tat - (burst - 1) * T
  if allow > now then wait = math.max(wait, allow - now) end
  tats[i] = tat + T
end
if wait > 0 then
  if dirty then save(ttl) end
  return {math.ceil(wait), SRC_RATE_LIMIT}
end
for i = 1, #KEYS - 1 do
  local tat = math.ceil(tats[i])
  redis.call('SET', KEYS[i + 1], d(tat), 'PX', d(math.ceil((tat - now) / 1000) + 1))
end
sent = sent + 1
if reset > 0 and now >= reset - BOUNDARY_GUARD then carry = carry + 1 end
if probing then probe = now + PROBE_INTERVAL end
save(ttl)
if probing then return {0, SRC_OUTAGE} end
return {0, SRC_NONE}
`))

// observeScript is Limiter.Observe.
//
//	KEYS[1]  scope state
//	ARGV[1]  1 if the signal has a Retry-After; ARGV[2] its end from now (µs)
//	ARGV[3]  the window's limit, -1 if not said
//	ARGV[4]  1 if the signal has a reset time; ARGV[5] the reset from now (µs)
//	ARGV[6]  remaining, -1 if not said
//	ARGV[7]  "f" failed, "o" answered normally or throttled, "" neither
//	ARGV[8]  cool-down (µs), 0 for the probe interval
//	ARGV[9]  idle TTL (ms)
var observeScript = redis.NewScript(scriptConsts(luaCommon + `
local hasRetry, retryIn = ARGV[1] == '1', tonumber(ARGV[2])
local sigLimit = tonumber(ARGV[3])
local hasReset, resetIn = ARGV[4] == '1', tonumber(ARGV[5])
local remaining = tonumber(ARGV[6])
local kind, cool, ttl = ARGV[7], tonumber(ARGV[8]), tonumber(ARGV[9])

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
elseif not hasReset and remaining == 0 and not hasRetry then
  if now + DEFAULT_HOLD > hold then hold = now + DEFAULT_HOLD end
end
if kind == 'f' then
  failures = failures + 1
  if failures >= OUTAGE_THRESHOLD then
    local w = cool
    if w <= 0 then w = PROBE_INTERVAL end
    if down == 0 or cool > 0 then probe = now + w end
    down = 1
  end
elseif kind == 'o' then
  failures, down = 0, 0
end
save(ttl)
return {0, 0}
`))

// scriptConsts writes the Go constants into a script's source.
func scriptConsts(src string) string {
	us := func(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) }
	return strings.NewReplacer(
		"SRC_NONE", strconv.Itoa(srcNone),
		"SRC_RETRY_AFTER", strconv.Itoa(srcRetryAfter),
		"SRC_RATE_LIMIT", strconv.Itoa(srcRateLimit),
		"SRC_OUTAGE", strconv.Itoa(srcOutage),
		"HOLD_MARGIN", us(holdMargin),
		"DEFAULT_HOLD", us(defaultHold),
		"PROBE_INTERVAL", us(probeInterval),
		"WINDOW_TOLERANCE", us(windowTolerance),
		"BOUNDARY_GUARD", us(boundaryGuard),
		"OUTAGE_THRESHOLD", strconv.Itoa(outageThreshold),
	).Replace(src)
}
