package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/cluster"
)

// TestClusterFailover runs 5,000 noop jobs through two hubs on a
// three-node RabbitMQ cluster with quorum queues, each hub given every
// node's URL with its own node first, and kills (SIGKILL) the node that
// leads the execute and status queues mid-stream; the control plane is on
// that node too. The node comes back a few seconds later. Every job must
// get a status; duplicates are counted as at-least-once, and the recovery
// times are reported (docs/design/rabbitmq-cluster.md).
func TestClusterFailover(t *testing.T) {
	const (
		jobCount    = 5000
		killAfter   = 1000 // answered jobs before the kill
		downFor     = 5 * time.Second
		publishStep = 50
	)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	rc := startRabbitCluster(t, ctx, 3)
	started := time.Now()

	e := newEnv(t, ownNodeFirst(rc.URLs, 0))
	a := e.startHub("--queue-type", "quorum")
	b := e.startHub("--queue-type", "quorum", "--amqp-url", ownNodeFirst(rc.URLs, 1))
	for _, n := range []string{"a1", "a2"} {
		e.startWorker(n, []string{a.GRPCAddr, b.GRPCAddr}, "--executor", "noop", "--noop-delay", "5ms", "--slots", "8")
	}
	for _, n := range []string{"b1", "b2"} {
		e.startWorker(n, []string{b.GRPCAddr, a.GRPCAddr}, "--executor", "noop", "--noop-delay", "5ms", "--slots", "8")
	}
	e.waitWorkers(a, 2, 30*time.Second)
	e.waitWorkers(b, 2, 30*time.Second)

	types, err := rc.Ctl(ctx, 1, "-q", "-s", "list_queues", "name", "type")
	if err != nil {
		t.Fatalf("list_queues = %v", err)
	}
	for _, q := range []string{e.execQ, e.execQ + ".dead", e.statusQ} {
		if !strings.Contains(types, q+"\tquorum") {
			t.Fatalf("queue %s is not a quorum queue:\n%s", q, types)
		}
	}
	victim, err := rc.Leader(ctx, e.execQ)
	if err != nil {
		t.Fatalf("Leader(execute queue) = %v", err)
	}
	if l, err := rc.Leader(ctx, e.statusQ); err != nil || l != victim {
		t.Fatalf("status queue leader = node %d, %v; want node %d, the execute queue's (hub A declared both through its own node)", l, err, victim)
	}

	workersOfA := e.workerIDs(a)
	jobs := ids("cluster", jobCount)
	published := make(chan publishOutcome, 1)
	go func() { published <- publishPaced(ctx, e.cp, jobs, publishStep, 100*time.Millisecond) }()

	if _, err := e.cp.WaitFor(ctx, jobs[:killAfter]...); err != nil {
		t.Fatalf("WaitFor(first %d) = %v%s", killAfter, err, e.diagnose(a))
	}
	if err := rc.Kill(ctx, victim); err != nil {
		t.Fatalf("Kill(node %d) = %v", victim, err)
	}
	killedAt := time.Now()
	restarted := make(chan error, 1)
	go func() {
		select {
		case <-time.After(downFor):
		case <-ctx.Done():
		}
		restarted <- rc.Restart(ctx, victim)
	}()

	if _, err := e.cp.WaitFor(ctx, jobs...); err != nil {
		t.Fatalf("WaitFor(all) = %v; %s%s%s", err, e.cp.Ledger(jobs), e.diagnose(a), e.diagnose(b))
	}
	pub := <-published
	if pub.err != nil {
		t.Fatalf("publishing = %v", pub.err)
	}
	if err := <-restarted; err != nil {
		t.Fatalf("Restart(node %d) = %v", victim, err)
	}
	backAt := time.Now()
	// The node is back as a member of the queue's Raft group.
	if err := cluster.Poll(ctx, 500*time.Millisecond, func() bool {
		out, err := rc.Ctl(ctx, victim, "-q", "-s", "list_queues", "name", "online")
		return err == nil && queueOnlineOn(out, e.execQ, rc.Nodes[victim-1])
	}); err != nil {
		t.Fatalf("node %d not back online in the execute queue's members: %v", victim, err)
	}
	for _, h := range []*hubProc{a, b} {
		if err := cluster.Poll(ctx, 200*time.Millisecond, func() bool { return ready(h) }); err != nil {
			t.Fatalf("hub %s not ready after the failover%s", h.GRPCAddr, e.diagnose(h))
		}
	}

	l := e.cp.Ledger(jobs)
	if l.Lost != 0 || l.Unexpected != 0 || l.Undecodable != 0 {
		t.Errorf("Ledger() = %s, want lost=0 unexpected=0 undecodable=0 (lost: %v)", l, head(l.LostIDs, 10))
	}
	failed := 0
	for _, id := range jobs {
		for _, s := range e.cp.Statuses(id) {
			if !s.GetSuccess() {
				failed++
			}
		}
	}
	if failed != 0 {
		t.Errorf("%d failed statuses, want every noop job to succeed", failed)
	}
	repeated := e.cp.RepeatedStatuses()
	all := recoveryOf(e.cp, jobs, killedAt, nil)
	onA := recoveryOf(e.cp, jobs, killedAt, workersOfA)
	cpMove := "none"
	if f := e.cp.Failovers(); len(f) > 0 {
		cpMove = f[0].Back.Sub(f[0].Lost).Round(time.Millisecond).String()
	}
	record(t, "3-node cluster, quorum, 2 hubs, node %d (leader) kill -9, back after %s: %s; duplicates=%d (same message again=%d, job run again=%d), control-plane publishes repeated=%d; "+
		"all statuses: first after kill %s, longest stall %s; hub A's (on the killed node): first after kill %s, longest stall %s; all answered %s after kill; control plane moved in %s; run %s",
		victim, backAt.Sub(killedAt).Round(100*time.Millisecond), l, l.Duplicates, repeated, l.Duplicates-repeated, pub.repeated,
		all.firstAfter, all.stall, onA.firstAfter, onA.stall, all.drained, cpMove, time.Since(started).Round(time.Second))
}

// startRabbitCluster starts an n-node cluster with scripts/rabbitmq-cluster
// on free ports; cleanup stops it.
func startRabbitCluster(t *testing.T, ctx context.Context, n int) *cluster.RabbitCluster {
	t.Helper()
	rc, err := cluster.StartRabbitCluster(ctx, n, freeClusterBasePort(t, n), t.TempDir())
	if err != nil {
		t.Fatalf("StartRabbitCluster() = %v (is rabbitmq-server installed? scripts/ensure-rabbitmq)", err)
	}
	t.Cleanup(func() {
		if dir := os.Getenv("E2E_LOG_DIR"); dir != "" {
			keepRabbitLogs(t, rc, filepath.Join(dir, t.Name()))
		}
		if err := rc.Stop(context.Background()); err != nil {
			t.Errorf("stop the cluster: %v", err)
		}
	})
	return rc
}

// freeClusterBasePort picks a base port for scripts/rabbitmq-cluster whose
// AMQP (base+i), distribution (base+1000+i) and CLI (base+11000+i) ports
// are free now, so that concurrent runs do not collide.
func freeClusterBasePort(t *testing.T, n int) int {
	t.Helper()
	var offsets []int
	for i := range n {
		offsets = append(offsets, i, 1000+i, 11000+i)
	}
	base, err := cluster.FreePortBase(offsets...)
	if err != nil {
		t.Fatalf("FreePortBase() = %v", err)
	}
	return base
}

// ownNodeFirst is the nodes' URLs comma-joined, starting at node i: the
// --amqp-url of a hub that runs next to node i.
func ownNodeFirst(urls []string, i int) string {
	return strings.Join(append(slices.Clone(urls[i:]), urls[:i]...), ",")
}

type publishOutcome struct {
	repeated int
	err      error
}

// publishPaced publishes jobs step at a time with a pause between steps,
// so that publishing goes on through the failover.
func publishPaced(ctx context.Context, cp *cluster.ControlPlane, jobs []string, step int, pause time.Duration) publishOutcome {
	var out publishOutcome
	for i := 0; i < len(jobs); i += step {
		reqs := make([]*blacktreev1.JobRequest, 0, step)
		for _, id := range jobs[i:min(i+step, len(jobs))] {
			reqs = append(reqs, job(id))
		}
		n, err := cp.PublishAll(ctx, reqs, step)
		out.repeated += n
		if err != nil {
			out.err = err
			return out
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			out.err = ctx.Err()
			return out
		}
	}
	return out
}

// queueOnlineOn reports whether rabbitmqctl's "list_queues name online"
// output lists node among queue's online members.
func queueOnlineOn(listing, queue, node string) bool {
	for _, line := range strings.Split(listing, "\n") {
		name, members, ok := strings.Cut(line, "\t")
		if ok && name == queue {
			return strings.Contains(members, node)
		}
	}
	return false
}

type recovery struct {
	firstAfter, stall, drained time.Duration
}

// recoveryOf measures, from when each job's first status arrived: the time
// from the kill to the first status after it, the longest gap between
// first statuses from the kill on, and the time from the kill until every
// job was answered. With workers set, only jobs whose first status came
// from one of them count.
func recoveryOf(cp *cluster.ControlPlane, jobs []string, killedAt time.Time, workers map[string]bool) recovery {
	var after []time.Time
	for _, id := range jobs {
		at, ok := cp.FirstStatusAt(id)
		if !ok || !at.After(killedAt) {
			continue
		}
		if workers != nil && !workers[cp.Statuses(id)[0].GetWorkerId()] {
			continue
		}
		after = append(after, at)
	}
	if len(after) == 0 {
		return recovery{}
	}
	slices.SortFunc(after, func(x, y time.Time) int { return x.Compare(y) })
	r := recovery{firstAfter: after[0].Sub(killedAt), drained: after[len(after)-1].Sub(killedAt)}
	prev := killedAt
	for _, at := range after {
		r.stall = max(r.stall, at.Sub(prev))
		prev = at
	}
	round := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return recovery{firstAfter: round(r.firstAfter), stall: round(r.stall), drained: round(r.drained)}
}

func head(s []string, n int) string {
	if len(s) > n {
		return fmt.Sprintf("%v ... (%d more)", s[:n], len(s)-n)
	}
	return fmt.Sprint(s)
}

// workerIDs returns the ids of the workers connected to hub h.
func (e *env) workerIDs(h *hubProc) map[string]bool {
	e.t.Helper()
	client, ctx := e.admin(h)
	resp, err := client.ListWorkers(ctx, &blacktreev1.ListWorkersRequest{})
	if err != nil {
		e.t.Fatalf("ListWorkers() = %v", err)
	}
	ids := map[string]bool{}
	for _, w := range resp.GetWorkers() {
		ids[w.GetWorkerId()] = true
	}
	return ids
}

// keepRabbitLogs copies the cluster's node logs into dir, for reading a
// run afterwards ($E2E_LOG_DIR, as env.keepLog does for processes).
func keepRabbitLogs(t *testing.T, rc *cluster.RabbitCluster, dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("keep rabbit logs: %v", err)
		return
	}
	for _, f := range rc.LogFiles() {
		b, err := os.ReadFile(f)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "rabbit-"+filepath.Base(f)), b, 0o644)
		}
		if err != nil {
			t.Logf("keep rabbit logs: %v", err)
		}
	}
}
