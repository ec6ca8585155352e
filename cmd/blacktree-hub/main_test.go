package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/blacktree/blacktree/hub"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		check   func(*options) bool
	}{
		{name: "defaults", check: func(o *options) bool {
			return o.grpcAddr == ":7070" && o.httpAddr == ":7071" && o.executeQueue == "execute.queue" &&
				o.statusQueue == "status.queue" && o.lostWorkerGrace == 30*time.Second && o.logging.Level == "info" &&
				o.placement == hub.PlacementSpread && o.cacheAffinity && o.affinityWait == 0
		}},
		{name: "cache affinity off", args: []string{"--cache-affinity=false", "--affinity-wait", "2s"},
			check: func(o *options) bool { return !o.cacheAffinity && o.affinityWait == 2*time.Second }},
		{name: "negative affinity wait", args: []string{"--affinity-wait", "-1s"}, wantErr: "--affinity-wait"},
		{name: "env fallback", env: map[string]string{"BLACKTREE_AMQP_URL": "amqp://x@h:1/", "BLACKTREE_LOST_WORKER_GRACE": "5s"},
			check: func(o *options) bool { return o.amqpURL == "amqp://x@h:1/" && o.lostWorkerGrace == 5*time.Second }},
		{name: "flag wins over env", args: []string{"--prefetch", "7"}, env: map[string]string{"BLACKTREE_PREFETCH": "9"},
			check: func(o *options) bool { return o.prefetch == 7 }},
		{name: "placement", args: []string{"--placement", "binpack"}, check: func(o *options) bool { return o.placement == hub.PlacementBinpack }},
		{name: "placement from env", env: map[string]string{"BLACKTREE_PLACEMENT": "binpack"},
			check: func(o *options) bool { return o.placement == hub.PlacementBinpack }},
		{name: "bad placement", args: []string{"--placement", "pack"}, wantErr: "want spread or binpack"},
		{name: "heartbeat defaults", check: func(o *options) bool {
			return o.heartbeatInterval == 5*time.Second && o.maxHeartbeatInterval == 20*time.Second && o.maxHeartbeatRate == 1000 &&
				o.heartbeatGrid == 100*time.Millisecond
		}},
		{name: "ledger defaults", check: func(o *options) bool {
			return o.ledger && o.ledgerQueue == "" && o.ledgerRenew == 5*time.Second && o.ledgerTimeout == 0
		}},
		{name: "ledger off", args: []string{"--ledger=false"}, check: func(o *options) bool { return !o.ledger }},
		{name: "ledger timeout under two renewals", args: []string{"--ledger-renew-interval", "5s", "--ledger-timeout", "9s"}, wantErr: "--ledger-timeout"},
		{name: "heartbeat grid off", args: []string{"--heartbeat-grid", "0"}, check: func(o *options) bool { return o.heartbeatGrid == 0 }},
		{name: "heartbeat grid from env", env: map[string]string{"BLACKTREE_HEARTBEAT_GRID": "1s"},
			check: func(o *options) bool { return o.heartbeatGrid == time.Second }},
		{name: "negative heartbeat grid", args: []string{"--heartbeat-grid", "-1s"}, wantErr: "heartbeat-grid"},
		{name: "max heartbeat interval follows a longer interval", args: []string{"--heartbeat-interval", "30s"},
			check: func(o *options) bool { return o.maxHeartbeatInterval == 30*time.Second }},
		{name: "max heartbeat interval shorter than the interval", args: []string{"--heartbeat-interval", "30s", "--max-heartbeat-interval", "10s"},
			wantErr: "shorter than --heartbeat-interval"},
		{name: "heartbeat rate off", args: []string{"--max-heartbeat-rate", "0"}, check: func(o *options) bool { return o.maxHeartbeatRate == 0 }},
		{name: "negative heartbeat rate", env: map[string]string{"BLACKTREE_MAX_HEARTBEAT_RATE": "-5"}, wantErr: "max-heartbeat-rate"},
		{name: "unknown flag", args: []string{"--nope"}, wantErr: "not defined"},
		{name: "bad env", env: map[string]string{"BLACKTREE_HOLD_TIMEOUT": "soon"}, wantErr: "BLACKTREE_HOLD_TIMEOUT"},
		{name: "negative lookahead", args: []string{"--lookahead", "-1"}, wantErr: "--lookahead"},
		{name: "cert without key", args: []string{"--tls-cert", "c.pem"}, wantErr: "go together"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, wantErr: "log-level"},
		// Deprecated and ignored, but still accepted: old unit files keep working.
		{name: "log write interval accepted", args: []string{"--log-write-interval", "-1s"},
			check: func(o *options) bool { return o.logging.WriteInterval == "-1s" }},
		{name: "log write interval from env", env: map[string]string{"BLACKTREE_LOG_WRITE_INTERVAL": "0"},
			check: func(o *options) bool { return o.logging.WriteInterval == "0" }},
		{name: "positional", args: []string{"extra"}, wantErr: "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			o, err := parse(tc.args, &bytes.Buffer{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parse(%v) = %v, want error containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil || !tc.check(o) {
				t.Fatalf("parse(%v) = %+v, %v; want the expected options", tc.args, o, err)
			}
		})
	}
}

func TestRunRefusesWithoutAuth(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"--grpc-addr", "127.0.0.1:0"}, &out); code == 0 {
		t.Fatalf("run() = 0, want non-zero without tokens or --insecure-no-auth")
	}
	if lines := strings.Count(strings.TrimSpace(out.String()), "\n") + 1; lines != 1 || !strings.Contains(out.String(), "--insecure-no-auth") {
		t.Errorf("run() output = %q, want one line naming --insecure-no-auth", out.String())
	}
}

// TestDeprecatedLogWriteInterval: the flag is accepted, so old unit files
// keep working, and the hub says once that it ignores it.
func TestDeprecatedLogWriteInterval(t *testing.T) {
	var out bytes.Buffer
	run([]string{"--grpc-addr", "127.0.0.1:0", "--log-write-interval", "20ms"}, &out) // refused: no auth
	if got := strings.Count(out.String(), "--log-write-interval is deprecated and ignored"); got != 1 {
		t.Errorf("run() output = %q, want the deprecation warning once", out.String())
	}
	out.Reset()
	run([]string{"--grpc-addr", "127.0.0.1:0"}, &out)
	if strings.Contains(out.String(), "deprecated") {
		t.Errorf("run() without the flag = %q, want no deprecation warning", out.String())
	}
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"--help"}, &out); code != 0 {
		t.Fatalf("run(--help) = %d, want 0", code)
	}
	for _, want := range []string{"--amqp-url", "BLACKTREE_AMQP_URL", "--worker-tokens", "--insecure-no-auth", "Examples:", "docs/configuration.md", "--log-write-interval"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help output lacks %q", want)
		}
	}
	// Measured figures and tuning advice live in docs/configuration.md.
	for _, unwanted := range []string{"GOGC", "KiB", "BENCHMARKS"} {
		if strings.Contains(out.String(), unwanted) {
			t.Errorf("--help output mentions %q; measured figures belong in the docs", unwanted)
		}
	}
}

func TestRunRefusesBadPushPrefix(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"--grpc-addr", "127.0.0.1:0", "--insecure-no-auth", "--allowed-push-prefixes", "reg.example.com/team,Bad Prefix"}, &out); code != 2 {
		t.Fatalf("run() = %d, want 2 for a bad --allowed-push-prefixes", code)
	}
	if !strings.Contains(out.String(), `--allowed-push-prefixes: push prefix \"Bad Prefix\"`) && !strings.Contains(out.String(), `--allowed-push-prefixes: push prefix "Bad Prefix"`) {
		t.Errorf("run() output = %q, want the refusal naming the prefix", out.String())
	}
}
