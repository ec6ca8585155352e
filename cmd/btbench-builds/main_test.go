package main

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHelpListsEachFlagWithOneLine(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("run(--help) = %d, want 0; stderr:\n%s", code, stderr.String())
	}
	help := stderr.String()
	for _, flag := range []string{"rounds", "fleet-workers", "fleet-repos", "fleet-rounds", "builder", "worker-arg", "affinity-wait", "hand-docker", "json", "out"} {
		if n := strings.Count(help, "\n  --"+flag+" ") + strings.Count(help, "\n  --"+flag+"\n"); n != 1 {
			t.Errorf("--help lists --%s %d times, want once:\n%s", flag, n, help)
		}
	}
	flags, continuations := 0, 0
	for _, line := range strings.Split(help, "\n") {
		switch {
		case strings.HasPrefix(line, "  --"):
			flags++
		case strings.HasPrefix(line, "    "):
			continuations++
		}
	}
	if flags == 0 || continuations != 0 {
		t.Errorf("--help has %d flags and %d continuation lines, want one line a flag:\n%s", flags, continuations, help)
	}
}

func TestUnknownFlagIsAUsageError(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--no-such-flag"}, &stdout, &stderr); code != 2 {
		t.Errorf("run(--no-such-flag) = %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "no-such-flag") {
		t.Errorf("stderr = %q, want it to name the flag", stderr.String())
	}
}
