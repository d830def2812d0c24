package lockconfig_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leaselock/lock/lockconfig"
)

// secret is the password of these tests; no error or String may show it,
// nor any long part of it.
const secret = "Pw-7xQ2secret"

// numericSecret is a password given, wrongly, as a JSON number.
const numericSecret = "72229"

// noSecret fails t if any text of err shows the password.
func noSecret(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		if strings.Contains(text, secret) || strings.Contains(text, "7xQ2") || strings.Contains(text, numericSecret) {
			t.Errorf("%s: the error shows the password: %s", what, text)
		}
	}
}

// TestSecretsNotShown gives a password in every place a config may hold
// one, or by mistake put one, with something wrong nearby.
func TestSecretsNotShown(t *testing.T) {
	for _, config := range []string{
		// Where passwords belong, beside a bad field.
		`{"type":"redis","connection":{"host":"h","port":0,"password":"` + secret + `"}}`,
		`{"type":"redis","connection":{"host":"h","password":"` + secret + `","keyPrefix":"x"}}`,
		`{"type":"redis","connection":"redis://u:` + secret + `@h:99999"}`,
		`{"type":"redis","connection":"redis://u:` + secret + `@h/x"}`,
		`{"type":"redis","connection":"http://u:` + secret + `@h"}`,
		`{"type":"redis","connection":"redis://u:` + secret + `@h?skip_verify=1"}`,
		`{"type":"redis","connection":"redis://u:` + secret + `@[bad"}`,
		`{"type":"redis","connection":"redis://u:` + secret + `@h%zz"}`,
		`{"type":"redis","connection":{"url":"redis://u:` + secret + `@h","password":"` + secret + `"}}`,
		`{"type":"redis","nodes":["redis://u:` + secret + `@a:1","redis://v:` + secret + `@a:1"]}`,
		`{"type":"redis","nodes":[{"url":"redis://:` + secret + `@a","host":"a"}]}`,
		`{"type":"redis","nodes":[{"host":"a","password":"` + secret + `","tls":{"certFile":"c"}}]}`,
		// A password of the wrong type is not shown either.
		`{"type":"redis","connection":{"host":"h","password":` + numericSecret + `}}`,
		`{"type":"redis","connection":{"host":"h","password":["` + secret + `"]}}`,
		// Where passwords do not belong.
		`{"type":"redis","connection":{"host":"h","pasword":"` + secret + `"}}`,
		`{"type":"redis","connection":{"host":"h","auth_pass":"` + secret + `"}}`,
		`{"type":"redis","connection":"u:` + secret + `@h:6379"}`,
		`{"type":"redis","connection":{"host":"u:` + secret + `@h"}}`,
		`{"type":"redis:` + secret + `@h"}`,
		`{"type":"inMemory","namespace":"redis://:` + secret + `@h","retry":"x"}`,
		`{"type":"redis","nodes":"redis://:` + secret + `@h"}`,
		`{"type":"redis","connection":{"host":"h","username":"redis://:` + secret + `@h","port":"1"}}`,
		`"redis://:` + secret + `@h"`,
		`{"lockConfig":"redis://:` + secret + `@h"}`,
		`{"lockConfig":"{\"type\":\"redis\",\"connection\":\"redis://:` + secret + `@h:0\"}"}`,
		`{"lockConfig":{"type":"redis"},"password":"` + secret + `"}`,
		`{"type":"redis","connection":{"host":"h","password":"` + secret + `"},"password":"` + secret + `"}`,
		`{"type":"redis","connection":{"host":"h","password":"` + secret + `","password":"` + secret + `"}}`,
	} {
		_, err := lockconfig.Parse([]byte(config))
		if err == nil {
			t.Errorf("Parse(%s) err = nil, want an error", config)
		}
		noSecret(t, "Parse", err)
	}

	// A valid config: String hides the password, and so does an error
	// found when reading its TLS files.
	dir := t.TempDir()
	for _, config := range []string{
		`{"type":"redis","nodes":["rediss://app:` + secret + `@a/1",{"host":"b","password":"` + secret + `","tls":{"caFile":"` + filepath.Join(dir, "none.pem") + `"}}]}`,
	} {
		c, err := lockconfig.Parse([]byte(config))
		if err != nil {
			t.Fatalf("Parse(%s): %v", config, err)
		}
		for _, text := range []string{c.String(), fmt.Sprint(c), fmt.Sprint(*c), fmt.Sprintf("%+v", c), fmt.Sprint(c.Nodes), fmt.Sprintf("%v", c.Nodes[0])} {
			if strings.Contains(text, secret) {
				t.Errorf("a Config prints its password: %s", text)
			}
		}
		_, err = c.Backend()
		if err == nil {
			t.Fatal("Backend() with a missing CA file: err = nil")
		}
		noSecret(t, "Backend", err)
		_, err = lockconfig.Open([]byte(config), "ns")
		noSecret(t, "Open", err)
	}
}
