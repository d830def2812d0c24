package rueidislock

import (
	"slices"
	"strings"
	"testing"
)

func TestSlot(t *testing.T) {
	if got := crc16("123456789"); got != 0x31C3 {
		t.Errorf("crc16(123456789) = %#x, want 0x31c3 (CRC-16/XMODEM)", got)
	}
	for key, want := range map[string]uint16{
		"foo":                  12182, // from the Redis Cluster specification's examples
		"{user1000}.following": slot("user1000"),
		"foo{}{bar}":           crc16("foo{}{bar}") % 16384, // an empty tag is no tag
		"foo{{bar}}zap":        slot("{bar"),
		"foo{bar}{zap}":        slot("bar"),
	} {
		if got := slot(key); got != want {
			t.Errorf("slot(%q) = %d, want %d", key, got, want)
		}
	}
}

// FuzzFenceKey checks the mapping from a key to its counter's name: the
// counter lives in the key's hash slot, its name is no user key (it has a
// NUL byte, which user keys may not), and two keys never share a counter.
func FuzzFenceKey(f *testing.F) {
	for _, k := range []string{"a", "{a}", "a{", "}", "a}b", "{a}b}", "{}", "{a{b}", "a{b", "x:fence", `"]]--`, "\r\n"} {
		f.Add(k, k+"x")
	}
	f.Add("{a{b}", "a{b") // once mapped to one name
	f.Fuzz(func(t *testing.T, a, b string) {
		if a == "" || b == "" || strings.Contains(a+b, "\x00") {
			return
		}
		fa, fb := fenceKey(a), fenceKey(b)
		if slot(fa) != slot(a) {
			t.Errorf("fenceKey(%q) = %q is in slot %d, the key in %d", a, fa, slot(fa), slot(a))
		}
		if !strings.Contains(fa, "\x00") {
			t.Errorf("fenceKey(%q) = %q could be a user key", a, fa)
		}
		if a != b && fa == fb {
			t.Errorf("keys %q and %q share the counter %q", a, b, fa)
		}
	})
}

// TestInternalKeyNames pins the names of internal keys: processes of
// different versions of this package that lock the same key must name its
// counter, queue and registrations alike, or they would not exclude each
// other's fencing tokens and waiters.
func TestInternalKeyNames(t *testing.T) {
	for key, want := range map[string][3]string{
		"a":            {"a\x00fence{20200}", "a\x00queue{20200}", "a\x00handover{20200}"},
		"order:42":     {"order:42\x00fence{633}", "order:42\x00queue{633}", "order:42\x00handover{633}"},
		"{a}":          {"{a}\x00fence", "{a}\x00queue", "{a}\x00handover"},
		"{user:7}:job": {"{user:7}:job\x00fence", "{user:7}:job\x00queue", "{user:7}:job\x00handover"},
		"{a{b}":        {"{a{b}\x00fence", "{a{b}\x00queue", "{a{b}\x00handover"},
		"a{":           {"{21362}\x00fence:s\x00a{", "{21362}\x00queue:s\x00a{", "{21362}\x00handover:s\x00a{"},
		"a{b":          {"{16189}\x00fence:s\x00a{b", "{16189}\x00queue:s\x00a{b", "{16189}\x00handover:s\x00a{b"},
		"{}x":          {"{19354}\x00fence:s\x00{}x", "{19354}\x00queue:s\x00{}x", "{19354}\x00handover:s\x00{}x"},
	} {
		got := [3]string{fenceKey(key), queueKey(key), registrationsKey(key)}
		if got != want {
			t.Errorf("internal keys of %q = %q, want %q", key, got, want)
		}
		if all := singleNodeKeys(key); !slices.Equal(all, []string{key, want[0], want[1], want[2]}) {
			t.Errorf("singleNodeKeys(%q) = %q, want the key and %q", key, all, want)
		}
	}
}
