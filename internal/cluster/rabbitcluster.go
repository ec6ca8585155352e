package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// RabbitCluster is a RabbitMQ cluster of several nodes on this machine, run
// by scripts/rabbitmq-cluster (Debian's rabbitmq-server, a node per port,
// one data directory each). Nodes are numbered from 1. A test may kill and
// restart nodes without touching the machine's shared broker.
type RabbitCluster struct {
	// URLs are the nodes' AMQP URLs, node 1 first.
	URLs []string
	// Nodes are the nodes' Erlang names, node 1 first.
	Nodes []string

	script string
	dir    string
	env    []string
}

// StartRabbitCluster starts n nodes with AMQP ports from basePort (node i
// on basePort+i-1; the script's Erlang distribution ports are basePort+1000
// and up, its CLI tools' basePort+11000 and up) and data under dir, and
// joins them into one cluster. It takes tens of seconds.
func StartRabbitCluster(ctx context.Context, n, basePort int, dir string) (*RabbitCluster, error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, err
	}
	c := &RabbitCluster{
		script: filepath.Join(root, "scripts", "rabbitmq-cluster"),
		dir:    dir,
		env: append(os.Environ(),
			"BLACKTREE_RMQ_BASE_PORT="+strconv.Itoa(basePort),
			"BLACKTREE_RMQ_DIR="+dir,
		),
	}
	if _, err := c.run(ctx, "start", strconv.Itoa(n)); err != nil {
		_, _ = c.run(context.Background(), "stop")
		return nil, err
	}
	urls, err := c.run(ctx, "urls")
	if err != nil {
		return nil, err
	}
	nodes, err := c.run(ctx, "nodes")
	if err != nil {
		return nil, err
	}
	c.URLs = strings.Split(strings.TrimSpace(urls), ",")
	c.Nodes = strings.Fields(nodes)
	return c, nil
}

// Kill kills node i's Erlang VM with SIGKILL.
func (c *RabbitCluster) Kill(ctx context.Context, i int) error {
	_, err := c.run(ctx, "kill", strconv.Itoa(i))
	return err
}

// Restart starts node i again on its data directory and waits until it has
// booted and rejoined the cluster.
func (c *RabbitCluster) Restart(ctx context.Context, i int) error {
	_, err := c.run(ctx, "restart", strconv.Itoa(i))
	return err
}

// Leader returns the number of the node that leads a quorum queue.
func (c *RabbitCluster) Leader(ctx context.Context, queue string) (int, error) {
	out, err := c.run(ctx, "leader", queue)
	if err != nil {
		return 0, err
	}
	name := strings.TrimSpace(out)
	for i, n := range c.Nodes {
		if n == name {
			return i + 1, nil
		}
	}
	return 0, fmt.Errorf("leader of %s: %q is not a node of this cluster", queue, name)
}

// Ctl runs rabbitmqctl args against node i and returns its output.
func (c *RabbitCluster) Ctl(ctx context.Context, i int, args ...string) (string, error) {
	return c.run(ctx, append([]string{"ctl", strconv.Itoa(i)}, args...)...)
}

// LogFiles returns the paths of the nodes' RabbitMQ log files (gone after
// Stop).
func (c *RabbitCluster) LogFiles() []string {
	files, _ := filepath.Glob(filepath.Join(c.dir, "node*", "log", "*.log"))
	return files
}

// Stop kills every node and removes the cluster's directory.
func (c *RabbitCluster) Stop(ctx context.Context) error {
	_, err := c.run(ctx, "stop")
	return err
}

func (c *RabbitCluster) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.script, args...)
	cmd.Env = c.env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("rabbitmq-cluster %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}
