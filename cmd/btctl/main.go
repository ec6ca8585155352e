package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes, part of btctl's interface (scripts test them).
const (
	exitOK        = 0 // success
	exitJobFailed = 1 // the job failed, or the hub refused the request
	exitUsage     = 2 // bad flags, arguments or job fields
	exitInfra     = 3 // broker or hub unreachable, timeout, auth failure
)

// exitError carries an exit code with the one line btctl prints for it.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

func infraErr(format string, args ...any) error {
	return &exitError{code: exitInfra, err: fmt.Errorf(format, args...)}
}

func failedErr(format string, args ...any) error {
	return &exitError{code: exitJobFailed, err: fmt.Errorf(format, args...)}
}

// env gives the process environment to run; tests pass their own.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, e env) error
}

func commands() []command {
	return []command{
		{"submit", "publish a JobRequest to execute.queue, optionally wait for its status", runSubmit},
		{"watch", "show the statuses in status.queue (peek by default; --consume takes them)", runWatch},
		{"logs", "follow a running job's output live (-f) and exit with its outcome", runLogs},
		{"workers", "list the hub's workers", runWorkers},
		{"jobs", "list the hub's in-flight jobs", runJobs},
		{"drain", "drain a worker: it finishes its jobs and takes no new ones", runDrain},
		{"deny", "deny a worker: end its session and refuse it from now on", runDeny},
		{"cancel", "cancel a job: stop it if running, never run it if not yet", runCancel},
	}
}

// run is main without os.Exit, for tests.
func run(ctx context.Context, args []string, e env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) == 2 && args[0] == "help" {
			return run(ctx, []string{args[1], "--help"}, e)
		}
		printUsage(e.stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], e)
		return report(err, e)
	}
	fmt.Fprintf(e.stderr, "btctl: unknown command %q (see btctl --help)\n", args[0])
	return exitUsage
}

// report prints err as one line and maps it to an exit code.
func report(err error, e env) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errHelp) {
		return exitOK
	}
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	fmt.Fprintf(e.stderr, "btctl: %s\n", msg)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return exitInfra
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `btctl — Blacktree operator CLI

Usage:
  btctl <command> [flags] [args]
  btctl <command> --help

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Examples:
  # build an image and wait for the outcome (exit 0 success, 1 failed job)
  btctl submit --repo acme/api --branch main --image acme/api:1.2 --wait

  # submit a request kept in a file, token from the environment
  BLACKTREE_GITHUB_TOKEN=... btctl submit --file job.json

  # what is waiting in status.queue (nothing is removed)
  btctl watch

  # follow a job's output live (hub run with --events-exchange blacktree.events)
  btctl logs -f build-42

  # operate the hub (admin token from a file or BLACKTREE_ADMIN_TOKEN)
  btctl workers --hub hub.example.com:7070 --admin-token-file admin.token
  btctl jobs --json
  btctl drain worker-7 --reason "kernel upgrade"
  btctl deny worker-7 --reason "token leaked"
  btctl cancel build-42 --reason "superseded"

Common flags (every command; environment fallback in brackets):
  --amqp-url URL          RabbitMQ URL [BLACKTREE_AMQP_URL] (default amqp://guest:guest@127.0.0.1:5672/)
  --execute-queue NAME    [BLACKTREE_EXECUTE_QUEUE] (default execute.queue)
  --status-queue NAME     [BLACKTREE_STATUS_QUEUE] (default status.queue)
  --hub HOST:PORT         hub gRPC address [BLACKTREE_HUB] (default 127.0.0.1:7070)
  --admin-token-file F    admin token file [BLACKTREE_ADMIN_TOKEN holds the token itself]
  --insecure              plaintext gRPC to the hub (loopback, tests)
  --tls-ca FILE           CA bundle that signs the hub's certificate (default: system roots)
  --tls-cert F, --tls-key F  client certificate and key, for a hub that requires mTLS

status.queue belongs to the control plane: 'watch' only peeks unless told
--consume, and 'submit --wait' takes only its own job's status and hands every
other one back (btctl submit --help, btctl watch --help).

Exit status: 0 success, 1 job failed or request refused by the hub,
2 usage error, 3 infrastructure error (broker/hub unreachable, timeout, auth).
`)
}
