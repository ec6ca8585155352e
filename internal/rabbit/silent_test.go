package rabbit

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blacktree/blacktree/internal/broker"
	"github.com/blacktree/blacktree/internal/cluster"
)

// proxiedEnv is newEnv with the broker reached through a fault proxy.
func proxiedEnv(t *testing.T, mutate func(*Config)) (*testEnv, *cluster.Proxy) {
	t.Helper()
	u, err := url.Parse(cluster.SharedBrokerURL())
	if err != nil {
		t.Fatalf("url.Parse(test URL) = %v", err)
	}
	proxy, err := cluster.StartProxy(u.Host)
	if err != nil {
		t.Fatalf("StartProxy() = %v", err)
	}
	t.Cleanup(proxy.Close)
	u.Host = proxy.Addr
	e := newEnv(t, func(c *Config) {
		c.URL = u.String()
		c.RPCTimeout = 500 * time.Millisecond
		if mutate != nil {
			mutate(c)
		}
	})
	return e, proxy
}

// setDialHook installs testHookAfterDial for one test.
func setDialHook(t *testing.T, f func(role string)) {
	testHookAfterDial.Store(&f)
	t.Cleanup(func() { testHookAfterDial.Store(nil) })
}

// TestConnectSilentBroker: a broker that completes the handshake and then
// answers nothing makes Connect fail with ErrBrokerTimeout instead of
// hanging in a queue declare.
func TestConnectSilentBroker(t *testing.T) {
	e, proxy := proxiedEnv(t, nil)
	setDialHook(t, func(string) { proxy.Partition() })
	c, err := New(e.cfg, testLogger(t))
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Connect(ctx) }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second): // RPCTimeout is 500ms
		t.Fatalf("Connect() still waiting 10s after the broker went silent")
	}
	if !errors.Is(err, ErrBrokerTimeout) {
		t.Errorf("Connect() = %v, want ErrBrokerTimeout", err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown() = %v", err)
	}
}

// TestReconnectPastSilentBroker: while reconnecting, the consumer reaches a
// broker that goes silent after the handshake (as a booting or unreachable
// one can). The attempt is dropped after RPCTimeout and a later one
// succeeds, so deliveries resume; before, the consumer waited forever.
func TestReconnectPastSilentBroker(t *testing.T) {
	e, proxy := proxiedEnv(t, nil)
	logger, logs := capturingLogger(t)
	e.logger = logger
	c := e.start(t)

	var once sync.Once
	setDialHook(t, func(role string) {
		if role == "consume" {
			once.Do(proxy.Partition)
		}
	})
	proxy.Reset() // both connections drop; the first consume redial goes silent
	waitFor(t, "a reconnect attempt dropped for want of an answer", 20*time.Second, func() bool {
		return strings.Contains(logs.String(), ErrBrokerTimeout.Error())
	})
	proxy.Heal()
	waitFor(t, "client ready again", 20*time.Second, c.Ready)

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := c.PublishTo(ctx, e.cfg.ExecuteQueue, broker.Message{Body: []byte(`{"jobId":"after"}`), MessageID: "after"}); err != nil {
		t.Fatalf("PublishTo() = %v", err)
	}
	if d := receive(t, c, 10*time.Second); string(d.Body) != `{"jobId":"after"}` {
		t.Errorf("delivery = %s, want the message published after the outage", d.Body)
	}
}
