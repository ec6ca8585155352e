package rabbit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"regexp"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/blacktree/blacktree/internal/broker"
	"github.com/blacktree/blacktree/internal/cluster"
	"github.com/blacktree/blacktree/internal/syncbuf"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const startHint = "start it with: bash shared/scripts/ensure-rabbitmq (from the repo's sibling shared/ folder), or point BLACKTREE_TEST_AMQP_URL at a broker"

func randHex(t testing.TB) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

var nonName = regexp.MustCompile(`[^A-Za-z0-9]+`)

// admin is a plain amqp091 connection for arranging and inspecting queues.
type admin struct {
	t    testing.TB
	conn *amqp.Connection
	ch   *amqp.Channel
}

// newAdmin dials RabbitMQ, failing the test with how to start it.
func newAdmin(t testing.TB) *admin {
	t.Helper()
	conn, err := amqp.Dial(cluster.SharedBrokerURL())
	if err != nil {
		t.Fatalf("RabbitMQ is not reachable at %s: %v; %s", MaskURL(cluster.SharedBrokerURL()), err, startHint)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("admin channel: %v", err)
	}
	a := &admin{t: t, conn: conn, ch: ch}
	t.Cleanup(func() { _ = conn.Close() })
	return a
}

// count returns the number of ready messages in queue.
func (a *admin) count(queue string) int {
	a.t.Helper()
	q, err := a.ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		a.t.Fatalf("inspect queue %s: %v", queue, err)
	}
	return q.Messages
}

// get fetches and acks one message, failing when the queue is empty.
func (a *admin) get(queue string) amqp.Delivery {
	a.t.Helper()
	d, ok, err := a.ch.Get(queue, true)
	if err != nil || !ok {
		a.t.Fatalf("get from %s: ok=%v err=%v", queue, ok, err)
	}
	return d
}

// testEnv is a Client on fresh queues that are deleted at cleanup.
type testEnv struct {
	cfg    Config
	logger hclog.Logger // optional, set before start
	client *Client
	admin  *admin
	runErr chan error
}

// newEnv builds a Config on random queue names; mutate may adjust it.
func newEnv(t testing.TB, mutate func(*Config)) *testEnv {
	t.Helper()
	a := newAdmin(t)
	id := nonName.ReplaceAllString(t.Name(), "-") + "-" + randHex(t)
	cfg := Config{
		URL:            cluster.SharedBrokerURL(),
		ExecuteQueue:   "bt-test-exec-" + id,
		StatusQueue:    "bt-test-status-" + id,
		ConnectionName: "bt-test-" + id,
		ReconnectMin:   50 * time.Millisecond,
		ReconnectMax:   500 * time.Millisecond,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	t.Cleanup(func() {
		c, err := amqp.Dial(cluster.SharedBrokerURL())
		if err != nil {
			return
		}
		defer c.Close()
		ch, err := c.Channel()
		if err != nil {
			return
		}
		for _, q := range []string{cfg.ExecuteQueue, cfg.StatusQueue, cfg.ExecuteQueue + DeadLetterSuffix, cfg.DeadLetterQueue, cfg.ExecuteQueue + LedgerSuffix} {
			if q != "" {
				_, _ = ch.QueueDelete(q, false, false, false)
			}
		}
	})
	return &testEnv{cfg: cfg, admin: a}
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Debug, Output: t.Output()})
}

// start creates, connects and runs the Client; cleanup shuts it down.
func (e *testEnv) start(t testing.TB) *Client {
	t.Helper()
	if e.logger == nil {
		e.logger = testLogger(t)
	}
	c, err := New(e.cfg, e.logger)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("Connect() = %v; %s", err, startHint)
	}
	e.client, e.cfg = c, c.Config()
	e.runErr = make(chan error, 1)
	go func() { e.runErr <- c.Run(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown() = %v", err)
		}
		select {
		case err := <-e.runErr:
			if err != nil {
				t.Errorf("Run() = %v, want nil", err)
			}
		case <-ctx.Done():
			t.Errorf("Run() did not return after Shutdown")
		}
	})
	waitFor(t, "client ready", 10*time.Second, c.Ready)
	return c
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
	}
}

// receive returns the next delivery or fails after timeout.
func receive(t *testing.T, c *Client, timeout time.Duration) broker.Delivery {
	t.Helper()
	select {
	case d, ok := <-c.Deliveries():
		if !ok {
			t.Fatalf("Deliveries() closed")
		}
		return d
	case <-time.After(timeout):
		t.Fatalf("no delivery within %v", timeout)
	}
	panic("unreachable")
}

// expectNone fails when a delivery arrives within wait.
func expectNone(t *testing.T, c *Client, wait time.Duration) {
	t.Helper()
	select {
	case d := <-c.Deliveries():
		t.Fatalf("unexpected delivery %q", d.Body)
	case <-time.After(wait):
	}
}

// killConnection closes, server-side, the connections named name.
func killConnection(t *testing.T, name string) {
	t.Helper()
	if err := cluster.CloseConnections(name); err != nil {
		t.Fatalf("killConnection(%q): %v", name, err)
	}
}

// capturingLogger logs to the test output and to the returned buffer.
func capturingLogger(t testing.TB) (hclog.Logger, *syncbuf.Buffer) {
	b := &syncbuf.Buffer{}
	return hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Debug, Output: io.MultiWriter(t.Output(), b)}), b
}
