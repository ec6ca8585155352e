package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// SharedBrokerURL is the RabbitMQ that tests share:
// BLACKTREE_TEST_AMQP_URL when it is set, else the machine's broker on
// 5672 (scripts/ensure-rabbitmq starts it).
func SharedBrokerURL() string {
	if u := os.Getenv("BLACKTREE_TEST_AMQP_URL"); u != "" {
		return u
	}
	return "amqp://guest:guest@127.0.0.1:5672/"
}

// rabbitmqServer is Debian's server script that runs the node in the
// foreground without switching users (the /usr/sbin wrapper would su to
// the rabbitmq user and lose our environment).
const rabbitmqServer = "/usr/lib/rabbitmq/bin/rabbitmq-server"

// PrivateBroker is a RabbitMQ node of its own (own name, ports and data
// directory) that a test may crash and restart without disturbing the
// machine's shared broker on 5672 or other tests using it.
type PrivateBroker struct {
	// URL is the AMQP URL of the node.
	URL string

	name, dir string
	port      int
	cmd       *exec.Cmd
	done      chan struct{}
}

// PrivateBrokerDistOffset is how far above its AMQP port a private node
// listens for Erlang distribution.
const PrivateBrokerDistOffset = 20000

// StartPrivateBroker starts a node named name on port (AMQP) and
// port+PrivateBrokerDistOffset (Erlang distribution), with data under dir.
func StartPrivateBroker(ctx context.Context, name, dir string, port int) (*PrivateBroker, error) {
	if _, err := os.Stat(rabbitmqServer); err != nil {
		return nil, fmt.Errorf("%s missing: run scripts/ensure-rabbitmq: %w", rabbitmqServer, err)
	}
	b := &PrivateBroker{URL: fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port), name: name, dir: dir, port: port}
	if err := os.WriteFile(filepath.Join(dir, "enabled_plugins"), []byte("[].\n"), 0o644); err != nil {
		return nil, err
	}
	return b, b.Start(ctx)
}

// Start starts the node (again) and waits until it accepts AMQP
// connections. Durable queues and persistent messages survive a restart.
func (b *PrivateBroker) Start(ctx context.Context) error {
	cmd := exec.Command(rabbitmqServer)
	cmd.Env = append(os.Environ(),
		"RABBITMQ_NODENAME="+b.name+"@localhost",
		fmt.Sprintf("RABBITMQ_NODE_PORT=%d", b.port),
		fmt.Sprintf("RABBITMQ_DIST_PORT=%d", b.port+PrivateBrokerDistOffset),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(b.dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(b.dir, "log"),
		"RABBITMQ_PID_FILE="+filepath.Join(b.dir, "pid"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(b.dir, "enabled_plugins"),
		// A node that fails to boot writes its crash dump here, not into
		// the working directory (a test's package directory).
		"ERL_CRASH_DUMP="+filepath.Join(b.dir, "erl_crash.dump"),
	)
	cmd.Dir = b.dir
	out, err := os.OpenFile(filepath.Join(b.dir, "server.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start rabbitmq node %s: %w", b.name, err)
	}
	b.cmd, b.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(b.done)
	deadline := time.NewTimer(90 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if conn, err := amqp.Dial(b.URL); err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-b.done:
			return fmt.Errorf("rabbitmq node %s exited at start; see %s", b.name, filepath.Join(b.dir, "server.out"))
		case <-deadline.C:
			b.Kill()
			return fmt.Errorf("rabbitmq node %s not accepting connections after 90s", b.name)
		case <-ctx.Done():
			b.Kill()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Kill crashes the node (SIGKILL to its process group) and waits for it.
func (b *PrivateBroker) Kill() {
	if b.cmd == nil {
		return
	}
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-b.done
	b.cmd = nil
}

// Restart crashes the node and starts it again. Queues declared shortly
// before may not survive unless SyncMetadata ran after their declaration.
func (b *PrivateBroker) Restart(ctx context.Context) error {
	b.Kill()
	return b.Start(ctx)
}

// rabbitmqctl is Debian's control script run directly (the /usr/sbin
// wrapper would switch to the rabbitmq user and use that user's Erlang
// cookie; the private node runs with ours).
const rabbitmqctl = "/usr/lib/rabbitmq/bin/rabbitmqctl"

// SyncMetadata makes the node write its Mnesia transaction log to disk
// (mnesia:sync_log). RabbitMQ 3.10 can come back from SIGKILL without a
// queue declared shortly before, and without the messages in it: seen in 2
// of 14 restarts under CPU load, likely Mnesia's log tail still in its
// write cache; with this call first, 10 of 10 kept the queue. Tests that
// crash the node call it once their queues exist, so that the crash tests
// what a broker restart does to clients rather than RabbitMQ's durability
// of a declaration made a moment earlier. It takes a few seconds (it boots
// an Erlang VM for rabbitmqctl).
func (b *PrivateBroker) SyncMetadata(ctx context.Context) error {
	out, err := b.ctl(ctx, "eval", "mnesia:sync_log().")
	if err != nil {
		return fmt.Errorf("sync metadata: %w", err)
	}
	if got := strings.TrimSpace(out); got != "ok" {
		return fmt.Errorf("sync metadata of rabbitmq node %s: mnesia:sync_log() = %s, want ok", b.name, got)
	}
	return nil
}

// SetMemoryAlarm raises (on) or clears the node's memory alarm by setting
// its memory high watermark to 0 or back to RabbitMQ's default 0.4. While
// the alarm is up the node blocks every connection that publishes: it stops
// reading their sockets (and sends connection.blocked), so publishers feel
// TCP back-pressure and get no confirms. It takes a few seconds.
func (b *PrivateBroker) SetMemoryAlarm(ctx context.Context, on bool) error {
	watermark := "0.4"
	if on {
		watermark = "0"
	}
	if _, err := b.ctl(ctx, "set_vm_memory_high_watermark", watermark); err != nil {
		return fmt.Errorf("set memory alarm %v: %w", on, err)
	}
	return nil
}

// ctl runs rabbitmqctl against the node and returns its output.
func (b *PrivateBroker) ctl(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, rabbitmqctl, append([]string{"-n", b.name + "@localhost"}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("rabbitmqctl %s on node %s: %w\n%s", strings.Join(args, " "), b.name, err, out)
	}
	return string(out), nil
}
