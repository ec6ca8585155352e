package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// docBlock is one ```sh block of docs/GRPCURL.md.
type docBlock struct {
	line int
	text string
}

// grpcurlBlocks returns the ```sh blocks that start with grpcurl.
func grpcurlBlocks(t *testing.T, path string) []docBlock {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []docBlock
	var cur *docBlock
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(line) == "```sh":
			cur = &docBlock{line: n + 1}
		case cur != nil && strings.TrimSpace(line) == "```":
			if strings.HasPrefix(strings.TrimSpace(cur.text), "grpcurl ") {
				blocks = append(blocks, *cur)
			}
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return blocks
}

// TestGRPCURLDoc runs every grpcurl command of docs/GRPCURL.md with the
// pinned grpcurl (go.mod tool) against a real hub with a connected worker,
// the placeholders HUB, ADMIN_TOKEN, WORKER_ID and HUB_CA set as the doc
// says: -plaintext commands against a plaintext hub, -cacert ones against a
// TLS hub.
func TestGRPCURLDoc(t *testing.T) {
	doc := filepath.Join(moduleRoot(t), "docs", "GRPCURL.md")
	var plain, withTLS []docBlock
	for _, b := range grpcurlBlocks(t, doc) {
		switch {
		case strings.Contains(b.text, "-plaintext"):
			plain = append(plain, b)
		case strings.Contains(b.text, "-cacert"):
			withTLS = append(withTLS, b)
		default:
			t.Errorf("GRPCURL.md line %d: neither -plaintext nor -cacert: %s", b.line, b.text)
		}
	}
	if len(plain) < 8 || len(withTLS) < 2 {
		t.Fatalf("found %d plaintext and %d TLS grpcurl blocks in %s, want at least 8 (list, 2 describe, health, workers, jobs, drain, deny) and 2", len(plain), len(withTLS), doc)
	}
	bin := grpcurlBinary(t)
	t.Run("plaintext", func(t *testing.T) { runDocBlocks(t, bin, startHub(t, false), plain) })
	t.Run("tls", func(t *testing.T) { runDocBlocks(t, bin, startHub(t, true), withTLS) })
}

func runDocBlocks(t *testing.T, bin string, h *testHub, blocks []docBlock) {
	workerID, _ := startPythonWorker(t, h)
	// What each kind of command must print, so a command that "works" but
	// answers the wrong thing fails too.
	expect := map[string]string{
		" list":                              "blacktree.v1.AdminService",
		"describe blacktree.v1.AdminService": "rpc ListWorkers",
		"describe blacktree.v1.WorkerInfo":   "worker_id",
		"Health/Check":                       "SERVING",
		"/ListWorkers":                       workerID,
		"/ListJobs":                          "{",
		"/DrainWorker":                       "WORKER_STATE_DRAINING",
		"/DenyWorker":                        `"sessionEnded": true`,
		"/CancelJob":                         "CANCEL_JOB_OUTCOME_NOT_HELD",
	}
	for _, b := range blocks {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", b.text)
		cmd.Env = append(os.Environ(),
			"PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"),
			"HUB="+h.grpcAddr, "ADMIN_TOKEN="+h.adminToken, "WORKER_ID="+workerID, "HUB_CA="+h.tlsCA)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("GRPCURL.md line %d: %s: %v\n%s", b.line, strings.TrimSpace(b.text), err, out)
			continue
		}
		matched := false
		for key, want := range expect {
			if strings.Contains(b.text, key) {
				matched = true
				if !strings.Contains(string(out), want) {
					t.Errorf("GRPCURL.md line %d: %s: output lacks %q:\n%s", b.line, strings.TrimSpace(b.text), want, out)
				}
			}
		}
		if !matched {
			t.Errorf("GRPCURL.md line %d: %s: the test has no expectation for this command; add one", b.line, strings.TrimSpace(b.text))
		}
	}
}
