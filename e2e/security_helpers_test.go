package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/cluster"
	"github.com/blacktree/blacktree/internal/redact"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("WriteFile(%s) = %v", path, err)
	}
}

// startWorkerRaw starts a worker with exactly args plus --name and a
// --state-dir of its own (no --insecure, no --token-file: the caller
// chooses transport and credentials).
func (e *env) startWorkerRaw(name string, args ...string) *cluster.Process {
	e.t.Helper()
	args = append([]string{"--name", name, "--state-dir", filepath.Join(e.dir, "state-"+name)}, args...)
	p, err := cluster.Start("worker "+name, bins.Worker, args, nil, nil)
	if err != nil {
		e.t.Fatalf("start worker: %v", err)
	}
	e.procs = append(e.procs, p)
	return p
}

// adminClient dials a hub's AdminService with the admin token, over TLS
// when tlsCfg is set.
func (e *env) adminClient(addr string, tlsCfg *tls.Config) (blacktreev1.AdminServiceClient, context.Context) {
	e.t.Helper()
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		e.t.Fatalf("grpc.NewClient() = %v", err)
	}
	e.t.Cleanup(func() { conn.Close() })
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+e.adminToken)
	return blacktreev1.NewAdminServiceClient(conn), ctx
}

// liveNames returns the names of the workers the hub lists as FREE or BUSY,
// sorted, and the worker id of each.
func liveNames(ctx context.Context, c blacktreev1.AdminServiceClient) ([]string, map[string]string, error) {
	resp, err := c.ListWorkers(ctx, &blacktreev1.ListWorkersRequest{})
	if err != nil {
		return nil, nil, err
	}
	var names []string
	ids := map[string]string{}
	for _, w := range resp.GetWorkers() {
		if s := w.GetState(); s == blacktreev1.WorkerState_WORKER_STATE_FREE || s == blacktreev1.WorkerState_WORKER_STATE_BUSY {
			names = append(names, w.GetName())
			ids[w.GetName()] = w.GetWorkerId()
		}
	}
	sort.Strings(names)
	return names, ids, nil
}

// waitLive waits until the hub's live workers are exactly want (sorted)
// and returns name → worker id.
func waitLive(t *testing.T, ctx context.Context, c blacktreev1.AdminServiceClient, want []string, within time.Duration) map[string]string {
	t.Helper()
	sort.Strings(want)
	pctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var names []string
	var ids map[string]string
	var err error
	if cluster.Poll(pctx, 50*time.Millisecond, func() bool {
		names, ids, err = liveNames(ctx, c)
		return err == nil && strings.Join(names, ",") == strings.Join(want, ",")
	}) != nil {
		t.Fatalf("live workers = %v (err %v) after %s, want %v", names, err, within, want)
	}
	return ids
}

// waitOut waits until p printed substr.
func waitOut(t *testing.T, p *cluster.Process, substr string, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := p.WaitOutput(ctx, substr); err != nil {
		t.Fatalf("%v", err)
	}
}

// waitExit waits for p to exit and returns its exit code.
func waitExit(t *testing.T, p *cluster.Process, within time.Duration) int {
	t.Helper()
	select {
	case <-p.Done():
		return p.ExitCode()
	case <-time.After(within):
		t.Fatalf("%s still running after %s; output:\n%s", p.Name, within, tail(p.Output(), 3000))
		return 0
	}
}

// sentinelScan counts occurrences of a secret, in the encodings
// internal/redact scrubs (redact.Encodings: raw, URL-escaped, hex, JSON
// escapes, base64 at every byte offset), across named texts.
type sentinelScan struct {
	patterns []string
	bytes    int
	sources  int
	found    []string // "source: pattern xN"
}

func newSentinelScan(secret string) *sentinelScan {
	return &sentinelScan{patterns: redact.Encodings(secret)}
}

// scan counts the places (pattern occurrences; a padded base64 form also
// counts as its unpadded prefix) where the secret shows in text.
func (s *sentinelScan) scan(source, text string) {
	s.bytes += len(text)
	s.sources++
	for _, p := range s.patterns {
		if n := strings.Count(text, p); n > 0 {
			s.found = append(s.found, fmt.Sprintf("%s: %q x%d", source, p, n))
		}
	}
}

func (s *sentinelScan) places() int { return len(s.found) }

// percentEveryByte formats every byte of s with format ("%%%02x").
func percentEveryByte(s, format string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, format, s[i])
	}
	return b.String()
}

// unicodeEveryRune formats every rune of s with format (`\u%04x`).
func unicodeEveryRune(s, format string) string {
	var b strings.Builder
	for _, r := range s {
		fmt.Fprintf(&b, format, r)
	}
	return b.String()
}
