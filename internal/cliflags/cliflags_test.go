package cliflags

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func newFS() (*flag.FlagSet, *string, *int) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	s := fs.String("amqp-url", "amqp://x/", "broker `url`")
	n := fs.Int("slots", 1, "slots")
	SetUsage(fs, "Usage: t\n")
	return fs, s, n
}

func TestParse(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		args      []string
		wantURL   string
		wantSlots int
		wantErr   string
	}{
		{
			name:      "defaults",
			wantURL:   "amqp://x/",
			wantSlots: 1,
		},
		{
			name:      "env fallback",
			env:       map[string]string{"BLACKTREE_AMQP_URL": "amqp://env/"},
			wantURL:   "amqp://env/",
			wantSlots: 1,
		},
		{
			name:      "flag wins over env",
			env:       map[string]string{"BLACKTREE_SLOTS": "3"},
			args:      []string{"--slots", "5"},
			wantURL:   "amqp://x/",
			wantSlots: 5,
		},
		{
			name:    "bad env",
			env:     map[string]string{"BLACKTREE_SLOTS": "many"},
			wantErr: "invalid BLACKTREE_SLOTS",
		},
		{
			name:    "bad flag",
			args:    []string{"--nope"},
			wantErr: "see --help",
		},
		{
			name:    "positional",
			args:    []string{"extra"},
			wantErr: `unexpected argument "extra"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			fs, url, slots := newFS()
			err := Parse(fs, tt.args, &bytes.Buffer{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse() = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || *url != tt.wantURL || *slots != tt.wantSlots {
				t.Errorf("Parse() = %v, url %q slots %d; want nil, %q, %d", err, *url, *slots, tt.wantURL, tt.wantSlots)
			}
		})
	}
}

func TestHelpListsEnvAndDefaults(t *testing.T) {
	fs, _, _ := newFS()
	var out bytes.Buffer
	if err := Parse(fs, []string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse(--help) = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"Usage: t", "--amqp-url url", "env BLACKTREE_AMQP_URL", `default "amqp://x/"`, `default "1"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help output = %q, want it to contain %q", out.String(), want)
		}
	}
	flags := 0
	fs.VisitAll(func(*flag.Flag) { flags++ })
	lines := strings.Split(strings.TrimSuffix(strings.TrimPrefix(out.String(), "Usage: t\n"), "\n"), "\n")
	if len(lines) != flags {
		t.Errorf("--help flag lines = %q, want one line for each of %d flags", lines, flags)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "  --") {
			t.Errorf("--help line %q does not start with a flag", l)
		}
	}
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEnvOr(t *testing.T) {
	env := map[string]string{"BLACKTREE_SET": "v", "BLACKTREE_EMPTY": ""}
	getenv := func(k string) string { return env[k] }
	for key, want := range map[string]string{"BLACKTREE_SET": "v", "BLACKTREE_EMPTY": "def", "BLACKTREE_UNSET": "def"} {
		if got := EnvOr(getenv, key, "def"); got != want {
			t.Errorf("EnvOr(%s) = %q, want %q", key, got, want)
		}
	}
}
