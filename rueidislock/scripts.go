package rueidislock

import "github.com/redis/rueidis"

// The scripts are constants: every key and value reaches them as KEYS and
// ARGV, never by building Lua from strings. rueidis runs them with EVALSHA
// and falls back to EVAL when a server answers NOSCRIPT (after SCRIPT FLUSH
// or a restart).

// acquireScript takes the lock key KEYS[1] for the value ARGV[1] for ARGV[2]
// milliseconds, and proposes ARGV[3] as the fencing token to the counter
// KEYS[2]. It answers 1 in the common case, a grant that stored the
// proposal, and otherwise {granted, counter, stored, pttl[, holder]}:
// counter is the counter after the script, stored whether the proposal
// was written, and, when the key is held by another value, pttl is the
// holder's remaining TTL and holder a digest of its value, which tells
// holders apart without showing their values. (A lone integer costs the
// node and the client less than a table, in the reply of every
// uncontended attempt.)
// A key already holding ARGV[1] is taken again: an earlier attempt of the
// same Acquire set it and its reply was lost.
//
// ARGV[4], if not empty, names a waiter, which a refusal puts at the end
// of the key's queue of waiters KEYS[3] (unless it is there already: it
// keeps its place) and a grant takes out of the queue and out of the
// registrations KEYS[4]. If ARGV[5] is not empty either, the refusal also
// registers the waiter for a hand-over of the key with this attempt's value
// for ARGV[5] milliseconds, as registerScript does. ARGV[6] is "1" unless
// this is the Acquire's first attempt, which has nothing to take out. Only a single node keeps a queue; see
// Backend.waiterID. A key that a release handed over to the waiter's
// registration (see releaseScript) counts as free for it: the waiter did
// not take the hand-over, and takes the key now.
//
// Counters are compared as Lua numbers, exact below 2^53, and returned as
// the strings stored: Lua would print a large number in exponent form.
var acquireScript = rueidis.NewLuaScript(acquireLua)

// acquireLua is the body of acquireScript, which quarantineAcquireScript
// runs after its own check.
//
// A free key, the common case, costs two calls: SET NX PX takes it, and
// SET GET stores the proposal and reads the counter, which is put back in
// the rare case that it was not below the proposal.
const acquireLua = `
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
	local cur = redis.call('GET', KEYS[1])
	if cur ~= ARGV[1] and ARGV[4] ~= '' and KEYS[4] then
		local reg = redis.call('HGET', KEYS[4], ARGV[4])
		if reg and string.match(reg, '^%S+') == cur then
			cur = ARGV[1]
		end
	end
	if cur ~= ARGV[1] then
		if ARGV[4] ~= '' then
			if not redis.call('LPOS', KEYS[3], ARGV[4]) then
				redis.call('RPUSH', KEYS[3], ARGV[4])
			end
			redis.call('PEXPIRE', KEYS[3], ARGV[2], 'NX')
			redis.call('PEXPIRE', KEYS[3], ARGV[2], 'GT')
			if ARGV[5] ~= '' then
				local t = redis.call('TIME')
				local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
				redis.call('HSET', KEYS[4], ARGV[4], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. string.format('%.0f', now + tonumber(ARGV[5])))
				redis.call('PEXPIRE', KEYS[4], ARGV[2], 'NX')
				redis.call('PEXPIRE', KEYS[4], ARGV[2], 'GT')
			end
		end
		return {0, redis.call('GET', KEYS[2]) or '0', 0, redis.call('PTTL', KEYS[1]), string.sub(redis.sha1hex(cur), 1, 16)}
	end
	-- The key holds this attempt's value (an earlier call of it whose
	-- reply was lost), or the value a release handed over to this waiter.
	redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
if ARGV[6] == '1' then
	redis.call('LREM', KEYS[3], 1, ARGV[4])
	if KEYS[4] then
		redis.call('HDEL', KEYS[4], ARGV[4])
	end
end
local c = redis.call('SET', KEYS[2], ARGV[3], 'GET') or '0'
if tonumber(ARGV[3]) > tonumber(c) then
	return 1
end
redis.call('SET', KEYS[2], c)
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
// and announces the release so that waiters wake, on a single node (over
// several, quorumReleaseScript releases).
//
// It takes the first waiter out of the key's queue KEYS[3] and serves it
// alone (see announce), or, with nobody queued, announces ARGV[3] on the
// channel ARGV[2]; and it forgets the registration of the releasing
// waiter ARGV[4], if any, in KEYS[4], even if the key had expired: the
// lease is over either way, and a registration left behind would live on
// with every later one. KEYS[2] is the key's fencing counter: its KEYS are
// acquireScript's, singleNodeKeys.
var releaseScript = rueidis.NewLuaScript(releaseLua)

// quorumReleaseScript releases over several nodes, where there is no queue:
// it deletes KEYS[1] if it holds ARGV[1] and announces ARGV[3], the name of
// the release, the same on every node, on the channel ARGV[2], so that a
// waiter wakes once per release however many nodes announce it. It is the
// shortest script that does so, as every release runs it on every node.
var quorumReleaseScript = rueidis.NewLuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
	redis.call('DEL', KEYS[1])
	redis.call('PUBLISH', ARGV[2], ARGV[3])
	return 1
end
return 0
`)

// undoWakingScript is releaseScript sent as EVAL, for the undo of an
// attempt on a single node (see undoScript for why EVAL): there the grant
// held the whole key, and freeing it must serve the next waiter.
var undoWakingScript = rueidis.NewLuaScriptNoSha(releaseLua)

// announceLua defines announce(key, queue, registrations, fence, channel,
// name), which serves the first waiter of queue once key is free.
//
// A waiter's name is its process's name, a colon, and its own; it is
// woken alone, with a message on its process's channel (channel, a NUL,
// and the process; see waitersMark). If it registered for a hand-over
// (see registerScript) in the hash registrations, and the registration
// has not expired, announce gives it the key: it sets key to the
// registered value for the registered TTL, raises fence past the counter
// as an attempt would, and sends the waiter a message of 0x01, the token,
// a space, a digest of the value, a space, and the waiter's name. The
// registration stays until the waiter releases the key, takes it with an
// attempt, or leaves. A waiter with no registration, or an expired one,
// which announce drops, is woken instead: it gets a NUL and its name, and
// makes an attempt.
//
// With nobody queued, or no queue, the message is name, on channel.
const announceLua = `
local function announce(key, queue, registrations, fence, channel, name)
	local next = queue and redis.call('LPOP', queue)
	if not next then
		redis.call('PUBLISH', channel, name)
		return
	end
	local process = string.match(next, '^([^:]+):')
	if process then
		channel = channel .. '\0' .. process
	end
	local reg = registrations and redis.call('HGET', registrations, next)
	local value, ttl, proposal, expires
	if reg then
		value, ttl, proposal, expires = string.match(reg, '^(%S+) (%d+) (%d+) (%d+)$')
		local t = redis.call('TIME')
		if not value or tonumber(expires) <= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then
			redis.call('HDEL', registrations, next)
			value = nil
		end
	end
	if not value then
		redis.call('PUBLISH', channel, '\0' .. next)
		return
	end
	redis.call('SET', key, value, 'PX', ttl)
	-- The registration must outlive the key it was handed: the waiter
	-- takes the key with it after a lost message, or frees it as it leaves.
	redis.call('PEXPIRE', registrations, ttl, 'GT')
	local token = proposal
	local c = redis.call('GET', fence) or '0'
	if tonumber(proposal) <= tonumber(c) then
		token = string.format('%.0f', tonumber(c) + 1)
	end
	redis.call('SET', fence, token)
	redis.call('PUBLISH', channel, '\1' .. token .. ' ' .. string.sub(redis.sha1hex(value), 1, 16) .. ' ' .. next)
end
`

// releaseLua is the body of releaseScript.
const releaseLua = announceLua + `
if KEYS[4] and ARGV[4] ~= '' then
	redis.call('HDEL', KEYS[4], ARGV[4])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
	redis.call('DEL', KEYS[1])
	announce(KEYS[1], KEYS[3], KEYS[4], KEYS[2], ARGV[2], ARGV[3])
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
redis.call('PEXPIRE', KEYS[2], ARGV[2], 'NX')
redis.call('PEXPIRE', KEYS[2], ARGV[2], 'GT')
return 1
`)

// registerScript is enqueueScript for a waiter that will take the key by
// hand-over (see announce): it also registers, in the hash KEYS[3], under
// the waiter's name ARGV[1], the value ARGV[2] to set the key to, for
// ARGV[3] milliseconds, with ARGV[4] as its fencing proposal, for the next
// ARGV[5] milliseconds, by which time the waiter registers again or makes
// an attempt. It answers 0, registering nothing, when the key is free or
// already handed over to the waiter's last registration: the waiter should
// make an attempt, which takes it.
var registerScript = rueidis.NewLuaScript(`
local cur = redis.call('GET', KEYS[1])
if not cur then
	return 0
end
local reg = redis.call('HGET', KEYS[3], ARGV[1])
if reg and string.match(reg, '^%S+') == cur then
	return 0
end
if not redis.call('LPOS', KEYS[2], ARGV[1]) then
	redis.call('RPUSH', KEYS[2], ARGV[1])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. string.format('%.0f', now + tonumber(ARGV[5])))
-- The queue and the registrations live as long as the longest TTL
-- registered: a shorter one must not cut another waiter's.
redis.call('PEXPIRE', KEYS[2], ARGV[3], 'NX')
redis.call('PEXPIRE', KEYS[2], ARGV[3], 'GT')
redis.call('PEXPIRE', KEYS[3], ARGV[3], 'NX')
redis.call('PEXPIRE', KEYS[3], ARGV[3], 'GT')
return 1
`)

// dequeueScript takes the waiter ARGV[1] out of the queue KEYS[3] of the
// lock key KEYS[1], and forgets its registration in KEYS[4]. If a release
// handed the key over to that registration, the script frees the key; if
// a release took the waiter out of the queue to wake it, and the key is
// free, that was in vain as the waiter is leaving. Either way it serves
// the next waiter on the channel ARGV[2], as releaseScript does; KEYS[2]
// is the fencing counter.
var dequeueScript = rueidis.NewLuaScript(announceLua + `
local queued = redis.call('LREM', KEYS[3], 1, ARGV[1]) > 0
local reg = redis.call('HGET', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
local cur = redis.call('GET', KEYS[1])
if cur and reg and string.match(reg, '^%S+') == cur then
	redis.call('DEL', KEYS[1])
	announce(KEYS[1], KEYS[3], KEYS[4], KEYS[2], ARGV[2], '')
elseif not cur and not queued then
	announce(KEYS[1], KEYS[3], KEYS[4], KEYS[2], ARGV[2], '')
end
return 0
`)
