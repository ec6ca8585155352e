package main

import (
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestUsage: --help prints one line per flag and exits 0; an unknown
// scenario is a usage error and runs nothing.
func TestUsage(t *testing.T) {
	var out, errOut strings.Builder
	if code := run([]string{"--help"}, &out, &errOut); code != 0 {
		t.Fatalf("run(--help) = %d, want 0", code)
	}
	flags := 0
	lines := strings.Split(errOut.String(), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "  -") {
			flags++
		}
		if strings.HasPrefix(l, "    \t") && !strings.HasPrefix(lines[i-1], "  -") {
			t.Errorf("flag help of more than one line: %q", l)
		}
	}
	if flags == 0 || flags > 12 {
		t.Errorf("--help lists %d flags, want between 1 and 12:\n%s", flags, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"--scenarios", "dispatch,bogus"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), `unknown scenario "bogus"`) {
		t.Errorf("run(--scenarios bogus) = %d, %q; want 2 naming the scenario", code, errOut.String())
	}
}
