package cluster

import (
	"testing"
	"time"
)

// StartForTest starts bin like Start and stops it (SIGTERM, then SIGKILL
// after 10 s) when the test ends, printing its output if the test failed.
func StartForTest(t testing.TB, name, bin string, env []string, args ...string) *Process {
	t.Helper()
	p, err := Start(name, bin, args, env, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("--- %s output:\n%s", name, p.Output())
		}
	})
	return p
}
