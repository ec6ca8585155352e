package rabbit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/blacktree/blacktree/internal/broker"
	"github.com/blacktree/blacktree/internal/cluster"
	"github.com/blacktree/blacktree/internal/syncbuf"
)

func TestSplitURLs(t *testing.T) {
	tests := []struct {
		name    string
		list    string
		want    []string
		wantErr string
	}{
		{name: "one", list: "amqp://u:p@h1:5672/", want: []string{"amqp://u:p@h1:5672/"}},
		{
			name: "three, spaces trimmed",
			list: "amqp://u:p@h1:5672/prod, amqp://u:p@h2:5672/prod ,amqp://u:p@h3/prod",
			want: []string{"amqp://u:p@h1:5672/prod", "amqp://u:p@h2:5672/prod", "amqp://u:p@h3/prod"},
		},
		{name: "empty element", list: "amqp://u:p@h1/,", wantErr: "empty URL"},
		{name: "bad second", list: "amqp://u:topsecret@h1/,http://u:topsecret@h2/", wantErr: "invalid URL http://u:***@h2/"},
		{name: "twice", list: "amqp://u:topsecret@h1/,amqp://u:topsecret@h1/", wantErr: "amqp://u:***@h1/ listed twice"},
		{name: "other vhost", list: "amqp://u:topsecret@h1/a,amqp://u:topsecret@h2/b", wantErr: `names vhost "b", the first names "a"`},
		{name: "default vhost both ways", list: "amqp://h1,amqp://h2/", want: []string{"amqp://h1", "amqp://h2/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SplitURLs(tt.list)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("SplitURLs() = %v, %v; want error containing %q", got, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "topsecret") {
					t.Fatalf("SplitURLs() error %q leaks the password", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("SplitURLs() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestMaskURLList(t *testing.T) {
	tests := []struct{ in, want string }{
		{"amqp://u:s1@h1:5672/,amqp://u:s2@h2:5672/", "amqp://u:***@h1:5672/,amqp://u:***@h2:5672/"},
		{"amqp://u:s1@h1/, amqp://h2/", "amqp://u:***@h1/,amqp://h2/"},
		// A literal comma in a password: both halves are withheld.
		{"amqp://u:sec,ret@h1/", "<unparseable url>,<unparseable url>"},
	}
	for _, tt := range tests {
		if got := MaskURL(tt.in); got != tt.want {
			t.Errorf("MaskURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
		for _, secret := range []string{"s1", "s2", "sec", "ret"} {
			if strings.Contains(MaskURL(tt.in), ":"+secret+"@") || strings.Contains(MaskURL(tt.in), secret+"@") {
				t.Errorf("MaskURL(%q) = %q leaks %q", tt.in, MaskURL(tt.in), secret)
			}
		}
	}
}

func TestNodesOrder(t *testing.T) {
	n := newNodes([]string{"a", "b", "c"})
	if got, want := n.order("consume"), []int{0, 1, 2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("first order = %v, want %v (the first URL first)", got, want)
	}
	n.reached("consume", 0)
	if got, want := n.order("consume"), []int{1, 2, 0}; !reflect.DeepEqual(got, want) {
		t.Fatalf("order after reaching node 0 = %v, want %v (the node just used last)", got, want)
	}
	if got, want := n.order("publish"), []int{0, 1, 2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("publish order = %v, want %v (roles are independent)", got, want)
	}
	n.reached("consume", 2)
	if got, want := n.order("consume"), []int{0, 1, 2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("order after reaching node 2 = %v, want %v (wraps)", got, want)
	}
}

// closedPortURL returns the shared broker's URL with its host moved to a
// loopback port where nothing listens: a node that is down.
func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	u, err := url.Parse(cluster.SharedBrokerURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Host = addr
	return u.String()
}

// TestConnectSkipsADownNode lists a node that is down before the live one:
// Connect, publishing and consuming go through the live node.
func TestConnectSkipsADownNode(t *testing.T) {
	down := closedPortURL(t)
	e := newEnv(t, func(c *Config) { c.URL = down + "," + cluster.SharedBrokerURL() })
	logger, logs := capturingLogger(t)
	e.logger = logger
	c := e.start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.PublishTo(ctx, e.cfg.ExecuteQueue, broker.Message{Body: []byte(`{"jobId":"one"}`), MessageID: "one"}); err != nil {
		t.Fatalf("PublishTo() = %v", err)
	}
	d := receive(t, c, 5*time.Second)
	if err := d.Ack(); err != nil {
		t.Fatalf("Ack() = %v", err)
	}
	want := `url="` + MaskURL(cluster.SharedBrokerURL()) + `"`
	reached := 0
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "connected to node") && strings.Contains(line, want) {
			reached++
		}
	}
	if reached < 2 {
		t.Fatalf("logs name the live node (%s) for %d connections, want both:\n%s", want, reached, logs.String())
	}
}

// TestConnectNoNodeReachable reports every node's failure, passwords
// masked.
func TestConnectNoNodeReachable(t *testing.T) {
	u1, _ := url.Parse(closedPortURL(t))
	u2, _ := url.Parse(closedPortURL(t))
	u1.User = url.UserPassword("bt", "topsecret")
	u2.User = url.UserPassword("bt", "topsecret")
	c, err := New(Config{URL: u1.String() + "," + u2.String(), ExecuteQueue: "e", StatusQueue: "s", RPCTimeout: 2 * time.Second}, nil)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	defer func() { _ = c.Shutdown(context.Background()) }()
	err = c.Connect(t.Context())
	if err == nil {
		t.Fatal("Connect() = nil with no node up")
	}
	msg := err.Error()
	if !strings.Contains(msg, "no node of 2 reachable") || !strings.Contains(msg, u1.Host) || !strings.Contains(msg, u2.Host) {
		t.Fatalf("Connect() = %q, want both nodes' failures", msg)
	}
	if strings.Contains(msg, "topsecret") {
		t.Fatalf("Connect() = %q leaks the password", msg)
	}
}

// TestNackOnQuorumQueueRenewsTheChannel: a publish the broker nacks (here
// a full quorum queue with reject-publish) returns ErrNacked and closes
// the publish channel, so the retry goes out on a new session; once the
// queue takes messages again, Publish succeeds.
func TestNackOnQuorumQueueRenewsTheChannel(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.QueueType = QueueTypeQuorum })
	if _, err := e.admin.ch.QueueDeclare(e.cfg.StatusQueue, true, false, false, false, amqp.Table{
		amqp.QueueTypeArg:     amqp.QueueTypeQuorum,
		amqp.QueueMaxLenArg:   int32(1),
		amqp.QueueOverflowArg: amqp.QueueOverflowRejectPublish,
	}); err != nil {
		t.Fatalf("QueueDeclare() = %v", err)
	}
	var logs *syncbuf.Buffer
	e.logger, logs = capturingLogger(t)
	c := e.start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := c.Publish(ctx, broker.Message{Body: []byte("{}"), MessageID: "fills"}); err != nil {
		t.Fatalf("Publish(fills) = %v", err)
	}
	// A quorum queue tells its publishers it is full with a short lag.
	var err error
	for i := 0; i < 50 && !errors.Is(err, ErrNacked); i++ {
		err = c.Publish(ctx, broker.Message{Body: []byte("{}"), MessageID: fmt.Sprintf("overflows-%d", i)})
	}
	if !errors.Is(err, ErrNacked) {
		t.Fatalf("Publish(overflows) = %v, want ErrNacked", err)
	}
	waitFor(t, "a new publish session", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "publisher: reconnected") && c.Ready()
	})
	if !strings.Contains(logs.String(), "broker nacked a publish; publishing on a new channel") {
		t.Fatalf("no warning about the nacked channel:\n%s", logs)
	}
	if _, err := e.admin.ch.QueuePurge(e.cfg.StatusQueue, false); err != nil {
		t.Fatalf("QueuePurge() = %v", err)
	}
	if err := c.Publish(ctx, broker.Message{Body: []byte("{}"), MessageID: "after"}); err != nil {
		t.Fatalf("Publish(after) = %v", err)
	}
}
