package rueidislock

import (
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
