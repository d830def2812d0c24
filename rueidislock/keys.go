package rueidislock

import (
	"strconv"
	"strings"
	"sync"
)

// The names of the keys and channels this package keeps beside a lock. A
// lock's own key is the plain key, as node-redlock keeps it. Every internal
// name contains a NUL byte, and keys with a NUL byte are refused, so that no
// user key can be an internal one.
const (
	// fenceMark follows the key in the counter's name: alone for a key
	// with a hash tag of its own, then "{tag}" for a key with no '{'.
	fenceMark = "\x00fence"
	// fenceSlot follows "{tag}" for other keys; the key comes after it.
	fenceSlot = "\x00fence:s\x00"
	// queueMark and queueSlot do the same for the queue of waiters.
	queueMark = "\x00queue"
	queueSlot = "\x00queue:s\x00"
	// registrationsMark and registrationsSlot do the same for the waiters
	// registered for a hand-over.
	registrationsMark = "\x00handover"
	registrationsSlot = "\x00handover:s\x00"
	// releasedPrefix starts the channel a release is announced on.
	releasedPrefix = "leaselock:released\x00"
)

// fenceKey returns the name of the fencing counter of key: a key that lives
// in the same Redis Cluster hash slot as key, so that one script can use
// both, that is a different name for every key, and that starts with key
// whenever it can, so that an ACL key pattern like ~app:* covers it.
func fenceKey(key string) string { return internalKey(key, fenceMark, fenceSlot) }

// queueKey returns the name of the list of key's waiters, named as
// fenceKey names the counter.
func queueKey(key string) string { return internalKey(key, queueMark, queueSlot) }

// registrationsKey returns the name of the hash of key's waiters
// registered for a hand-over, named as fenceKey names the counter.
func registrationsKey(key string) string {
	return internalKey(key, registrationsMark, registrationsSlot)
}

// singleNodeKeys returns the keys of the scripts that take and release key
// on a single node, where a release may serve the next waiter: the key, its
// fencing counter, its queue and its registrations, in the order of
// acquireScript's KEYS. An Acquire makes them once, and its release uses
// them again.
func singleNodeKeys(key string) []string {
	p := placementOf(key)
	return []string{key, p.name(fenceMark, fenceSlot), p.name(queueMark, queueSlot), p.name(registrationsMark, registrationsSlot)}
}

// internalKey returns the name of one of key's internal keys, told apart
// from the others by mark (or, for a key with a lone '{', by slotMark).
func internalKey(key, mark, slotMark string) string {
	return placementOf(key).name(mark, slotMark)
}

// placement is where key's internal keys put what keeps them in key's hash
// slot, worked out once for all of them.
type placement struct {
	key string
	tag string // "{tag}" of key's slot; "" if key has a hash tag of its own
	// first puts tag before the key: a '{' in key without a tag would
	// swallow a tag after it.
	first bool
}

// placementOf returns the placement of key's internal keys.
func placementOf(key string) placement {
	switch {
	case hasHashTag(key):
		// Key's own tag comes first, so a suffix does not change the slot.
		return placement{key: key}
	case !strings.Contains(key, "{"):
		// The first '{' is the tag's: a short tag of the key's slot.
		return placement{key: key, tag: slotTag(slot(key))}
	default:
		return placement{key: key, tag: slotTag(slot(key)), first: true}
	}
}

// name returns the name of the internal key told apart by mark (or, when
// the tag comes first, by slotMark, and the key after it for uniqueness).
func (p placement) name(mark, slotMark string) string {
	switch {
	case p.tag == "":
		return p.key + mark
	case p.first:
		return p.tag + slotMark + p.key
	default:
		return p.key + mark + p.tag
	}
}

// releasedChannel returns the channel on which the release of key is
// announced. Channels are not keys: they cannot collide with a user key.
func releasedChannel(key string) string {
	return releasedPrefix + key
}

// waitersMark joins a key's channel (releasedChannel) and the name of a
// process (a Backend's id) into the channel of that process's waiters of
// the key: a release that serves one queued waiter announces it there
// alone, so that only the process waiting hears it, not every process
// waiting for the key. The release script joins them with the same byte.
const waitersMark = "\x00"

// hasHashTag reports whether key has a Redis Cluster hash tag: a '{' and a
// later '}' with at least one byte between the first such pair.
func hasHashTag(key string) bool {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return false
	}
	end := strings.IndexByte(key[open+1:], '}')
	return end > 0
}

// slot returns the Redis Cluster hash slot of key.
func slot(key string) uint16 {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			key = key[open+1 : open+1+end]
		}
	}
	return crc16(key) % 16384
}

// crc16 is CRC-16/XMODEM, the checksum of Redis Cluster's key slots, a
// byte at a time: every Acquire names internal keys by it.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^s[i]]
	}
	return crc
}

// crc16Table is the CRC of each byte value alone, for crc16.
var crc16Table = func() (t [256]uint16) {
	for b := range t {
		crc := uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[b] = crc
	}
	return t
}()

var (
	slotTagsOnce sync.Once
	slotTags     []string
)

// slotTag returns a hash tag whose slot is s: a short string, with no '{'
// or '}', between braces. The table is made on first use, in a few
// milliseconds: most keys never need it.
func slotTag(s uint16) string {
	slotTagsOnce.Do(func() {
		slotTags = make([]string, 16384)
		left := len(slotTags)
		for n := 0; left > 0; n++ {
			tag := strconv.Itoa(n)
			if i := crc16(tag) % 16384; slotTags[i] == "" {
				slotTags[i] = "{" + tag + "}"
				left--
			}
		}
	})
	return slotTags[s]
}
