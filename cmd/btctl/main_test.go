package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/cluster"
	"github.com/blacktree/blacktree/internal/jobspec"
	"github.com/blacktree/blacktree/internal/rabbit"
	"github.com/blacktree/blacktree/internal/syncbuf"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testBroker is the test's own RabbitMQ connection, for declaring random
// queues and playing the hub or the control plane.
type testBroker struct {
	t    *testing.T
	conn *amqp.Connection
	mu   sync.Mutex // guards ch (one owner at a time)
	ch   *amqp.Channel
}

func newRabbit(t *testing.T) *testBroker {
	t.Helper()
	conn, err := amqp.DialConfig(cluster.SharedBrokerURL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		t.Fatalf("RabbitMQ is not reachable at %s: %v\nstart it with: bash ../shared/scripts/ensure-rabbitmq (from the repository root); tools: bash scripts/ensure-tools", rabbit.MaskURL(cluster.SharedBrokerURL()), err)
	}
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("open channel: %v", err)
	}
	r := &testBroker{t: t, conn: conn, ch: ch}
	t.Cleanup(func() { _ = conn.Close() })
	return r
}

func randomName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// queues declares a random durable execute and status queue pair, deleted
// when the test ends.
func (r *testBroker) queues() (execute, status string) {
	r.t.Helper()
	execute, status = randomName("btctl-test.execute"), randomName("btctl-test.status")
	for _, q := range []string{execute, status} {
		if _, err := r.ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			r.t.Fatalf("declare %s: %v", q, err)
		}
	}
	r.t.Cleanup(func() {
		conn, err := amqp.Dial(cluster.SharedBrokerURL())
		if err != nil {
			return
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return
		}
		_, _ = ch.QueueDelete(execute, false, false, false)
		_, _ = ch.QueueDelete(status, false, false, false)
	})
	return execute, status
}

func (r *testBroker) publishStatus(queue string, resp *blacktreev1.JobResponse) {
	r.t.Helper()
	body, err := jobspec.EncodeResponse(resp)
	if err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	err = r.ch.PublishWithContext(context.Background(), "", queue, false, false, amqp.Publishing{
		ContentType: "application/json", DeliveryMode: amqp.Persistent, MessageId: resp.GetJobId(), Body: body,
	})
	if err != nil {
		r.t.Fatalf("publish status: %v", err)
	}
}

// depth returns a queue's ready-message count.
func (r *testBroker) depth(queue string) int {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	q, err := r.ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		r.t.Fatalf("inspect %s: %v", queue, err)
	}
	return q.Messages
}

// waitDepth waits until queue holds want ready messages (requeues are
// asynchronous to the consumer's close).
func (r *testBroker) waitDepth(queue string, want int) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := -1
	if cluster.Poll(ctx, 50*time.Millisecond, func() bool { got = r.depth(queue); return got == want }) != nil {
		r.t.Fatalf("depth(%s) = %d, want %d", queue, got, want)
	}
}

// get takes one message from queue, failing the test when none comes.
func (r *testBroker) get(queue string) amqp.Delivery {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d amqp.Delivery
	if cluster.Poll(ctx, 20*time.Millisecond, func() bool {
		r.mu.Lock()
		got, ok, err := r.ch.Get(queue, true)
		r.mu.Unlock()
		if err != nil {
			r.t.Fatalf("get %s: %v", queue, err)
		}
		d = got
		return ok
	}) != nil {
		r.t.Fatalf("no message on %s within 10s", queue)
	}
	return d
}

// result is one btctl run.
type result struct {
	code           int
	stdout, stderr string
}

// btctl runs the command in-process with env vars from vars only.
func btctl(ctx context.Context, vars map[string]string, args ...string) result {
	var out, errb syncbuf.Buffer
	code := run(ctx, args, env{stdout: &out, stderr: &errb, getenv: func(k string) string { return vars[k] }})
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func queueVars(execute, status string) map[string]string {
	return map[string]string{
		"BLACKTREE_AMQP_URL":      cluster.SharedBrokerURL(),
		"BLACKTREE_EXECUTE_QUEUE": execute,
		"BLACKTREE_STATUS_QUEUE":  status,
	}
}

func oneLineErr(t *testing.T, r result) {
	t.Helper()
	if n := strings.Count(strings.TrimRight(r.stderr, "\n"), "\n"); n != 0 || !strings.HasPrefix(r.stderr, "btctl: ") {
		t.Errorf("stderr = %q, want one line starting with \"btctl: \"", r.stderr)
	}
}
