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
// ARGV[4], if not empty, names a waiter, which a refusal puts at the end
// of the key's queue of waiters KEYS[3] (unless it is there already: it
// keeps its place) and a grant takes out of it. Only a single node keeps
// a queue; see Backend.waiterID.
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
	if ARGV[4] ~= '' then
		if not redis.call('LPOS', KEYS[3], ARGV[4]) then
			redis.call('RPUSH', KEYS[3], ARGV[4])
		end
		redis.call('PEXPIRE', KEYS[3], ARGV[2])
	end
	return {0, c, 0, redis.call('PTTL', KEYS[1]), string.sub(redis.sha1hex(cur), 1, 16)}
end
if ARGV[4] ~= '' then
	redis.call('LREM', KEYS[3], 1, ARGV[4])
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
//
// It is sent as EVAL, never EVALSHA: an undo goes to a node that may have
// failed, and one that lost its script cache answers EVALSHA with NOSCRIPT,
// which rueidis answers with EVAL only if the reply arrives. Where replies
// are lost (the undo's own reason to exist), the key would stay until its
// TTL. Undos are rare, and the script is short.
var undoScript = rueidis.NewLuaScriptNoSha(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	return redis.call('DEL', KEYS[1])
end
return 0
`)

// releaseScript deletes KEYS[1] if it holds ARGV[1], as node-redlock does,
// and announces the release so that waiters wake. If the key's queue of
// waiters KEYS[2] (given on a single node) holds one, the release takes the
// first out of the queue and wakes it alone: the message, a NUL and the
// waiter's name, goes to its process's channel (the channel ARGV[2], a NUL
// and the process part of the name; see waiterChannel). Otherwise the
// message is ARGV[3], the name of the release, the same on every node, on
// the channel ARGV[2], so that a waiter wakes once per release however many
// nodes announce it.
var releaseScript = rueidis.NewLuaScript(releaseLua)

// undoWakingScript is releaseScript sent as EVAL, for the undo of an
// attempt on a single node (see undoScript for why EVAL): there the grant
// held the whole key, and freeing it must wake the next waiter.
var undoWakingScript = rueidis.NewLuaScriptNoSha(releaseLua)

// wakeLua defines announce(queue, channel, name), which wakes the first
// waiter of queue as releaseScript says, or every waiter if queue is nil
// or empty. A waiter's name is its process's name, a colon, and its own.
const wakeLua = `
local function announce(queue, channel, name)
	local next = queue and redis.call('LPOP', queue)
	if next then
		local process = string.match(next, '^([^:]+):')
		if process then
			channel = channel .. '\0' .. process
		end
		name = '\0' .. next
	end
	redis.call('PUBLISH', channel, name)
end
`

// releaseLua is the body of releaseScript.
const releaseLua = wakeLua + `
if redis.call('GET', KEYS[1]) == ARGV[1] then
	redis.call('DEL', KEYS[1])
	announce(KEYS[2], ARGV[2], ARGV[3])
	return 1
end
return 0
`

// enqueueScript puts the waiter ARGV[1] at the end of the queue KEYS[2] of
// the lock key KEYS[1], unless it is in it already, and keeps the queue
// for ARGV[2] milliseconds. It answers 0, queueing nothing, when the key is
// free: the waiter should try it rather than wait.
var enqueueScript = rueidis.NewLuaScript(`
if not redis.call('GET', KEYS[1]) then
	return 0
end
if not redis.call('LPOS', KEYS[2], ARGV[1]) then
	redis.call('RPUSH', KEYS[2], ARGV[1])
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
`)

// dequeueScript takes the waiter ARGV[1] out of the queue KEYS[2] of the
// lock key KEYS[1]. If it was not there and the key is free, a release
// took it out to wake it, which was in vain as it is leaving: the script
// announces the release again on the channel ARGV[2], naming the next
// waiter, as releaseScript does.
var dequeueScript = rueidis.NewLuaScript(wakeLua + `
if redis.call('LREM', KEYS[2], 1, ARGV[1]) == 0 and not redis.call('GET', KEYS[1]) then
	announce(KEYS[2], ARGV[2], '')
end
return 0
`)
