package cliflags

import (
	"bytes"
	"flag"
	"io"
	"strings"
	"testing"
)

func TestLogging(t *testing.T) {
	for _, tt := range []struct {
		name     string
		args     []string
		wantErr  string // "" means Logger succeeds
		wantWarn bool   // the deprecated flag's warning is logged
	}{
		{name: "defaults", args: nil},
		{name: "json debug", args: []string{"--log-json", "--log-level", "debug"}},
		{name: "bad level", args: []string{"--log-level", "loud"}, wantErr: `invalid --log-level "loud"`},
		{name: "deprecated flag", args: []string{"--log-write-interval", "5ms"}, wantWarn: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var l Logging
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			l.Register(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatalf("Parse(%q) = %v", tt.args, err)
			}
			var out bytes.Buffer
			logger, err := l.Logger("bin", &out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Logger() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Logger() = %v", err)
			}
			logger.Info("hello")
			if warned := strings.Contains(out.String(), "--log-write-interval is deprecated"); warned != tt.wantWarn {
				t.Errorf("deprecation warning logged = %v, want %v:\n%s", warned, tt.wantWarn, out.String())
			}
			if json := strings.HasPrefix(out.String(), "{"); json != l.JSON {
				t.Errorf("output is JSON = %v, want %v:\n%s", json, l.JSON, out.String())
			}
		})
	}
}
