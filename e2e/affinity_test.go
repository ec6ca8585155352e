package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestCacheAffinity: the real hub and two real workers. Two repositories
// are built side by side, round after round; after the first round each
// repository's jobs go to the worker that built it before (its cache
// summary holds the build key), whichever worker finished last, and the
// hub counts those placements warm.
func TestCacheAffinity(t *testing.T) {
	e := newEnv(t, sharedAMQP)
	h := e.startHub()
	for _, n := range []string{"w1", "w2"} {
		e.startWorker(n, []string{h.GRPCAddr}, "--executor", "noop", "--noop-delay", "200ms")
	}
	e.waitWorkers(h, 2, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const rounds = 5
	home := map[string]string{} // repository -> the worker of its first build
	for round := range rounds {
		var jobs []string
		repoOf := map[string]string{}
		for _, repo := range []string{"owner/alpha", "owner/beta"} {
			id := fmt.Sprintf("aff-%d-%s", round, strings.TrimPrefix(repo, "owner/"))
			req := job(id)
			req.RepoUrl = repo
			if err := e.cp.Publish(ctx, req); err != nil {
				t.Fatalf("Publish(%s) = %v", id, err)
			}
			jobs = append(jobs, id)
			repoOf[id] = repo
		}
		got, err := e.cp.WaitFor(ctx, jobs...)
		if err != nil {
			t.Fatalf("WaitFor() = %v", err)
		}
		for id, r := range got {
			if !r.GetSuccess() {
				t.Fatalf("status %s = %v, want success", id, r)
			}
			repo := repoOf[id]
			if round == 0 {
				home[repo] = r.GetWorkerId()
				continue
			}
			if r.GetWorkerId() != home[repo] {
				t.Errorf("round %d: %s ran on %s, want %s, where %s was built first", round, id, r.GetWorkerId(), home[repo], repo)
			}
		}
	}
	if home["owner/alpha"] == home["owner/beta"] {
		t.Fatalf("the first round ran both repositories on %s, want one each", home["owner/alpha"])
	}
	body := metricsText(t, h)
	want := fmt.Sprintf(`blacktree_placements_total{cache="warm"} %d`, 2*(rounds-1))
	if !strings.Contains(body, want+"\n") {
		t.Errorf("/metrics lacks %q", want)
	}
	record(t, "cache affinity: 2 repositories x %d rounds on 2 workers, every rebuild on its warm worker", rounds)
}
