package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// flagSet is a binary's flags as its --help lists them: name to default
// ("" when the help shows none).
type flagSet struct {
	binary   string
	defaults map[string]string
}

// helpLine is one flag line of --help (internal/cliflags.PrintFlags):
// "  --name [type]   usage (env BLACKTREE_NAME, default "value")".
var (
	helpLine    = regexp.MustCompile(`^  --([a-z0-9][a-z0-9-]*)\b`)
	helpDefault = regexp.MustCompile(`default "([^"]*)"\)$`)
)

// readFlags runs bin --help and parses its flag lines.
func readFlags(t *testing.T, bin string) flagSet {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(bin, "--help")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s --help = %v\n%s", bin, err, out.String())
	}
	fs := flagSet{binary: bin, defaults: map[string]string{}}
	for _, line := range strings.Split(out.String(), "\n") {
		m := helpLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		def := ""
		if d := helpDefault.FindStringSubmatch(line); d != nil {
			def = d[1]
		}
		fs.defaults[m[1]] = def
	}
	if len(fs.defaults) < 10 {
		t.Fatalf("%s --help lists %d flags; the help format changed?\n%s", bin, len(fs.defaults), out.String())
	}
	return fs
}

// errUnknownFlag is returned by parseArgs for a flag the binary lacks.
var errUnknownFlag = errors.New("unknown flag")

// parseArgs reads args written as --name=value or --name (a boolean) and
// returns them by name; every name must be a flag of fs.
func (fs flagSet) parseArgs(args []string) (map[string]string, error) {
	got := map[string]string{}
	for _, a := range args {
		body, ok := strings.CutPrefix(a, "--")
		if !ok {
			return nil, fmt.Errorf("argument %q: want --flag=value or --flag", a)
		}
		name, value, hasValue := strings.Cut(body, "=")
		if _, known := fs.defaults[name]; !known {
			return nil, fmt.Errorf("%w --%s for %s", errUnknownFlag, name, fs.binary)
		}
		if !hasValue {
			value = "true"
		}
		got[name] = value
	}
	return got, nil
}

// value is the flag's value in args, or its default.
func (fs flagSet) value(args map[string]string, name string) string {
	if v, ok := args[name]; ok {
		return v
	}
	return fs.defaults[name]
}

// hasEnv tells whether env is the BLACKTREE_* variable of one of the flags
// (internal/cliflags.EnvName).
func (fs flagSet) hasEnv(env string) bool {
	name, ok := strings.CutPrefix(env, "BLACKTREE_")
	if !ok {
		return false
	}
	_, known := fs.defaults[strings.ToLower(strings.ReplaceAll(name, "_", "-"))]
	return known
}

// port is the port number of a listen address such as ":7070".
func port(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	n, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return int32(n)
}

// TestFlagCheckRejects: the flag check can fail; a misspelt or removed
// flag in a manifest or unit is caught.
func TestFlagCheckRejects(t *testing.T) {
	hub := readFlags(t, bins.Hub)
	if _, err := hub.parseArgs([]string{"--grpc-addr=:7070", "--log-json"}); err != nil {
		t.Fatalf("parseArgs(real flags) = %v", err)
	}
	if _, err := hub.parseArgs([]string{"--grpc-address=:7070"}); !errors.Is(err, errUnknownFlag) {
		t.Errorf("parseArgs(--grpc-address) = %v, want errUnknownFlag", err)
	}
	if _, err := hub.parseArgs([]string{"--token-file=/x"}); !errors.Is(err, errUnknownFlag) {
		t.Errorf("parseArgs(a worker flag on the hub) = %v, want errUnknownFlag", err)
	}
	if hub.hasEnv("BLACKTREE_WORKER_TOKEN") || !hub.hasEnv("BLACKTREE_AMQP_URL") {
		t.Errorf("hasEnv: want BLACKTREE_AMQP_URL known and BLACKTREE_WORKER_TOKEN unknown to the hub")
	}
}
