// Package cliflags gives the Blacktree binaries one way to read flags:
// every flag has a BLACKTREE_* environment fallback (the command line
// wins), --help lists each flag on one line with its variable and default,
// errors are one line for the caller to print, and the logging flags
// (logging.go) build each binary's root logger.
package cliflags

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// EnvName is the environment variable that backs a flag:
// --amqp-url ↔ BLACKTREE_AMQP_URL.
func EnvName(flagName string) string {
	return "BLACKTREE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// SetUsage makes fs print head, then PrintFlags with each flag's
// BLACKTREE_* variable.
func SetUsage(fs *flag.FlagSet, head string) {
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), head)
		PrintFlags(fs.Output(), fs, EnvName)
	}
}

// PrintFlags writes one line per flag of fs, GNU style: `--name value`,
// the usage, then in brackets the environment variable env names (when env
// is not nil) and the default (when not zero). Usage strings are one short
// line each; tuning guidance belongs in docs/configuration.md.
func PrintFlags(w io.Writer, fs *flag.FlagSet, env func(flagName string) string) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		var notes []string
		if env != nil {
			notes = append(notes, "env "+env(f.Name))
		}
		switch f.DefValue {
		case "", "false", "0", "0s":
		default:
			notes = append(notes, fmt.Sprintf("default %q", f.DefValue))
		}
		if len(notes) > 0 {
			usage += " (" + strings.Join(notes, ", ") + ")"
		}
		fmt.Fprintf(tw, "  --%s\t%s\n", strings.TrimSpace(f.Name+" "+name), usage)
	})
	tw.Flush()
}

// Parse applies the environment fallbacks, then args. On --help it prints
// the usage to stderr and returns flag.ErrHelp; any other problem is one
// error line mentioning --help. Positional arguments are refused.
func Parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("invalid %s: %v", EnvName(f.Name), err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	// Errors are reported by the caller in one line; only --help prints usage.
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fs.Usage()
			return err
		}
		return fmt.Errorf("%w (see --help)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags only; see --help)", fs.Arg(0))
	}
	return nil
}

// EnvOr is getenv(key), or def when that is empty: the default of a flag
// whose environment fallback a command reads itself instead of through
// Parse (btctl, which takes its environment as an argument, and the demo).
func EnvOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}
