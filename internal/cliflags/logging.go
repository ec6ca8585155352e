package cliflags

import (
	"flag"
	"fmt"
	"io"

	"github.com/hashicorp/go-hclog"
)

// Logging is the logging flags every long-running Blacktree binary takes:
// --log-json, --log-level and the deprecated --log-write-interval.
type Logging struct {
	JSON  bool
	Level string
	// WriteInterval is the deprecated --log-write-interval: accepted so
	// that old command lines still start, and ignored with a warning.
	WriteInterval string
}

// Register adds the logging flags to fs.
func (l *Logging) Register(fs *flag.FlagSet) {
	fs.BoolVar(&l.JSON, "log-json", false, "log JSON lines instead of human-readable text")
	fs.StringVar(&l.Level, "log-level", "info", "log `level`: trace, debug, info, warn, error")
	fs.StringVar(&l.WriteInterval, "log-write-interval", "", "deprecated and ignored: log lines are written at once")
}

// Validate reports a --log-level hclog does not know.
func (l *Logging) Validate() error {
	if hclog.LevelFromString(l.Level) == hclog.NoLevel {
		return fmt.Errorf("invalid --log-level %q: want trace, debug, info, warn or error", l.Level)
	}
	return nil
}

// Logger is the binary's root logger, named name, writing to out. It
// warns once when the deprecated --log-write-interval was given.
func (l *Logging) Logger(name string, out io.Writer) (hclog.Logger, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.LevelFromString(l.Level),
		JSONFormat: l.JSON,
		Output:     out,
	})
	if l.WriteInterval != "" {
		logger.Warn("--log-write-interval is deprecated and ignored: log lines are written at once")
	}
	return logger, nil
}
