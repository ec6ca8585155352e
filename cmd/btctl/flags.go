package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/blacktree/blacktree/internal/cliflags"
)

// errHelp is returned after --help printed the usage: exit 0.
var errHelp = errors.New("help printed")

// common holds the flags every subcommand takes.
type common struct {
	amqpURL        string
	executeQueue   string
	statusQueue    string
	hub            string
	adminTokenFile string
	insecure       bool
	tlsCA          string
	tlsCert        string
	tlsKey         string
	connectTimeout time.Duration

	getenv func(string) string
}

// newFlagSet builds a subcommand's flag set with the common flags
// registered. usage is printed (to stdout) for --help.
func newFlagSet(name, usage string, e env) (*flag.FlagSet, *common) {
	fs := flag.NewFlagSet("btctl "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c := &common{getenv: e.getenv}
	fs.StringVar(&c.amqpURL, "amqp-url", cliflags.EnvOr(e.getenv, "BLACKTREE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), "RabbitMQ URL [BLACKTREE_AMQP_URL]")
	fs.StringVar(&c.executeQueue, "execute-queue", cliflags.EnvOr(e.getenv, "BLACKTREE_EXECUTE_QUEUE", "execute.queue"), "queue the hub consumes JobRequests from [BLACKTREE_EXECUTE_QUEUE]")
	fs.StringVar(&c.statusQueue, "status-queue", cliflags.EnvOr(e.getenv, "BLACKTREE_STATUS_QUEUE", "status.queue"), "queue the hub publishes JobResponses to [BLACKTREE_STATUS_QUEUE]")
	fs.StringVar(&c.hub, "hub", cliflags.EnvOr(e.getenv, "BLACKTREE_HUB", "127.0.0.1:7070"), "hub gRPC address host:port [BLACKTREE_HUB]")
	fs.StringVar(&c.adminTokenFile, "admin-token-file", cliflags.EnvOr(e.getenv, "BLACKTREE_ADMIN_TOKEN_FILE", ""), "file holding the admin token [BLACKTREE_ADMIN_TOKEN_FILE; BLACKTREE_ADMIN_TOKEN holds the token itself]")
	fs.BoolVar(&c.insecure, "insecure", false, "plaintext gRPC to the hub (loopback, tests)")
	fs.StringVar(&c.tlsCA, "tls-ca", cliflags.EnvOr(e.getenv, "BLACKTREE_TLS_CA", ""), "CA bundle `file` that signs the hub's certificate (default: system roots) [BLACKTREE_TLS_CA]")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "client certificate `file` for a hub that requires mTLS (no env fallback: BLACKTREE_TLS_CERT is the hub's own certificate)")
	fs.StringVar(&c.tlsKey, "tls-key", "", "key `file` of --tls-cert")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 10*time.Second, "how long to try reaching the broker or hub")
	fs.Usage = func() {
		fmt.Fprint(e.stdout, usage)
		fmt.Fprint(e.stdout, "\nFlags:\n")
		cliflags.PrintFlags(e.stdout, fs, nil)
	}
	return fs, c
}

// parse parses args, allowing flags after positional arguments
// (`btctl drain w1 --reason x`). It returns the positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) { // fs.Parse has printed the usage
				return nil, errHelp
			}
			return nil, usageErr("%s: %v (see %s --help)", fs.Name(), err, fs.Name())
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// adminToken reads the admin token from --admin-token-file or
// BLACKTREE_ADMIN_TOKEN. An empty token is allowed (a hub started with
// --insecure-no-auth needs none).
func (c *common) adminToken() (string, error) {
	if c.adminTokenFile != "" {
		b, err := os.ReadFile(c.adminTokenFile)
		if err != nil {
			return "", usageErr("read --admin-token-file: %v", pathErr(err))
		}
		return strings.TrimSpace(string(b)), nil
	}
	return strings.TrimSpace(c.getenv("BLACKTREE_ADMIN_TOKEN")), nil
}

// pathErr shortens *os.PathError to "path: reason".
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %v", pe.Path, pe.Err)
	}
	return err
}

// buildArgsFlag collects repeated --build-arg NAME=VALUE. Values may hold
// commas, so each flag is one argument.
type buildArgsFlag map[string]string

func (b buildArgsFlag) String() string {
	var parts []string
	for k, v := range b {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, " ")
}

func (b buildArgsFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("build arg %q is not NAME=VALUE", s)
	}
	b[k] = v
	return nil
}

// labelsFlag collects repeated --label k=v (or k=v,k2=v2).
type labelsFlag map[string]string

func (l labelsFlag) String() string {
	var parts []string
	for k, v := range l {
		parts = append(parts, k+"="+v)
	}
	return strings.Join(parts, ",")
}

func (l labelsFlag) Set(s string) error {
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("label %q is not key=value", kv)
		}
		l[k] = v
	}
	return nil
}
