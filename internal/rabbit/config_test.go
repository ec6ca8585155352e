package rabbit

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestNewValidation(t *testing.T) {
	base := Config{URL: "amqp://guest:guest@127.0.0.1:5672/", ExecuteQueue: "e", StatusQueue: "s"}
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "ok", mutate: func(*Config) {}},
		{name: "no url", mutate: func(c *Config) { c.URL = "" }, wantErr: "URL is required"},
		{name: "bad scheme", mutate: func(c *Config) { c.URL = "http://u:topsecret@h/" }, wantErr: "invalid URL http://u:***@h/"},
		{name: "no execute queue", mutate: func(c *Config) { c.ExecuteQueue = "" }, wantErr: "ExecuteQueue is required"},
		{name: "no status queue", mutate: func(c *Config) { c.StatusQueue = "" }, wantErr: "StatusQueue is required"},
		{name: "same queues", mutate: func(c *Config) { c.StatusQueue = "e" }, wantErr: "must differ"},
		{name: "bad queue type", mutate: func(c *Config) { c.QueueType = "stream" }, wantErr: "QueueType"},
		{name: "bad prefetch", mutate: func(c *Config) { c.Prefetch = -1 }, wantErr: "Prefetch"},
		{name: "dlq clash", mutate: func(c *Config) { c.DeadLetterQueue = "s" }, wantErr: "DeadLetterQueue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.mutate(&cfg)
			_, err := New(cfg, nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New() = %v, want error containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "topsecret") {
				t.Fatalf("New() = %v, leaks the password", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c, err := New(Config{URL: "amqp://localhost/", ExecuteQueue: "execute.queue", StatusQueue: "status.queue"}, nil)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	got := c.Config()
	if got.QueueType != QueueTypeClassic || got.Prefetch != 32 || got.DeadLetterQueue != "execute.queue.dead" ||
		got.ConnectionName != "blacktree" || got.ReconnectMin != 100*time.Millisecond || got.ReconnectMax != 10*time.Second {
		t.Fatalf("Config() = %+v, want documented defaults", got)
	}
	c, err = New(Config{URL: "amqp://localhost/", ExecuteQueue: "e", StatusQueue: "s", DisableDeadLetter: true}, nil)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	if dlq := c.Config().DeadLetterQueue; dlq != "" {
		t.Fatalf("DeadLetterQueue = %q with DisableDeadLetter, want empty", dlq)
	}
}

func TestMaskURL(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{name: "password", in: "amqp://guest:guest@127.0.0.1:5672/", want: "amqp://guest:***@127.0.0.1:5672/"},
		{name: "no password", in: "amqp://127.0.0.1/vh", want: "amqp://127.0.0.1/vh"},
		{name: "user only", in: "amqps://bob@h/", want: "amqps://bob@h/"},
		{name: "escaped password", in: "amqp://u:p%40ss%2Fw@h:1/", want: "amqp://u:***@h:1/"},
		{name: "unparseable", in: "amqp://u:secret@h:port%zz/", want: "<unparseable url>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MaskURL(tt.in); got != tt.want {
				t.Fatalf("MaskURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestConnectErrorMasksPassword(t *testing.T) {
	c, err := New(Config{URL: "amqp://guest:topsecret@127.0.0.1:1/", ExecuteQueue: "e", StatusQueue: "s"}, nil)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err = c.Connect(ctx)
	if err == nil {
		t.Fatalf("Connect() = nil, want connection error")
	}
	msg := err.Error()
	if strings.Contains(msg, "topsecret") || !strings.Contains(msg, "connect to amqp://guest:***@127.0.0.1:1/") || strings.Contains(msg, "\n") {
		t.Fatalf("Connect() = %q, want one line naming the masked URL", msg)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
}
