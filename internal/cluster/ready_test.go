package cluster

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestWaitHTTP200(t *testing.T) {
	var calls atomic.Int32
	// Not ready for the first two requests, then ready.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	never := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(never.Close)

	tests := []struct {
		name    string
		url     string
		script  string        // what the watched process runs (sh -c)
		timeout time.Duration // of the wait's context
		wantErr []string      // substrings of the error; none for success
		wantIs  error
	}{
		{name: "ready after 503s", url: srv.URL, script: "exec sleep 30", timeout: 30 * time.Second},
		{name: "process exits first", url: never.URL, script: "echo boom; exit 3", timeout: 30 * time.Second,
			wantErr: []string{"exited (exit status 3) before", "boom"}},
		{name: "deadline", url: never.URL, script: "echo waiting; exec sleep 30", timeout: 300 * time.Millisecond,
			wantErr: []string{"did not answer 200", "waiting"}, wantIs: context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Start("sh", "/bin/sh", []string{"-c", tc.script}, nil, nil)
			if err != nil {
				t.Fatalf("Start() = %v", err)
			}
			t.Cleanup(p.Kill)
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			err = WaitHTTP200(ctx, tc.url, p)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("WaitHTTP200() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("WaitHTTP200() = nil, want an error containing %q", tc.wantErr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("WaitHTTP200() = %v, want an error containing %q", err, want)
				}
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("WaitHTTP200() = %v, want errors.Is %v", err, tc.wantIs)
			}
		})
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("requests to the flaky server = %d, want 3", n)
	}
}
