package rueidislock

import "github.com/redis/rueidis"

// The scripts are constants: every key and value reaches them as KEYS and
// ARGV, never by building Lua from strings. rueidis runs them with EVALSHA
// and falls back to EVAL when a server answers NOSCRIPT (after SCRIPT FLUSH
// or a restart).

// acquireScript takes the lock key KEYS[1] for the value ARGV[1] for ARGV[2]
// milliseconds, and proposes ARGV[3] as the fencing token to the counter
// KEYS[2]. It answers {granted, counter, stored, pttl[, holder]}: counter
// is the counter after the script, stored whether the proposal was
// written, and, when the key is held by another value, pttl is the
// holder's remaining TTL and holder a digest of its value, which tells
// holders apart without showing their values.
// A key already holding ARGV[1] is taken again: an earlier attempt of the
// same Acquire set it and its reply was lost.
//
// Counters are compared as Lua numbers, exact below 2^53, and returned as
// the strings stored: Lua would print a large number in exponent form.
var acquireScript = rueidis.NewLuaScript(acquireLua)

// acquireLua is the body of acquireScript, which quarantineAcquireScript
// runs after its own check.
const acquireLua = `
local c = redis.call('GET', KEYS[2]) or '0'
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then
	return {0, c, 0, redis.call('PTTL', KEYS[1]), string.sub(redis.sha1hex(cur), 1, 16)}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if tonumber(ARGV[3]) > tonumber(c) then
	redis.call('SET', KEYS[2], ARGV[3])
	return {1, ARGV[3], 1, 0}
end
return {1, c, 0, 0}
`

// fenceScript raises the counter KEYS[2] to ARGV[2] if the lock key KEYS[1]
// still holds ARGV[1]: the second round of fencing, taken only when a
// granting node knew a counter at least as large as the proposal. The
// ownership check keeps a paused acquirer whose keys expired from raising
// counters for a token it will never use.
var fenceScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
	return 0
end
if tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[2]) then
	redis.call('SET', KEYS[2], ARGV[2])
end
return 1
`)

// extendScript sets the TTL of KEYS[1] to ARGV[2] milliseconds if it holds
// ARGV[1]. It never sets a key that is gone.
var extendScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// undoScript deletes KEYS[1] if it holds ARGV[1], silently: it takes back
// a failed attempt's partial grants, which free nothing another owner could
// use, so waking waiters for them would only make them spin.
var undoScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`)

// releaseScript deletes KEYS[1] if it holds ARGV[1], as node-redlock does,
// and announces the release on the channel ARGV[2] so that waiters wake.
// The message ARGV[3] names the release, the same on every node, so that a
// waiter wakes once per release however many nodes announce it.
var releaseScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	redis.call('DEL', KEYS[1])
	redis.call('PUBLISH', ARGV[2], ARGV[3])
	return 1
end
return 0
`)
