package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/jobspec"
)

const usageWorkers = `Usage: btctl workers [flags]

List the workers one hub knows (AdminService.ListWorkers): connected ones and
recently dead ones. Needs the admin token.

Examples:
  btctl workers --hub hub.example.com:7070 --admin-token-file admin.token
  BLACKTREE_ADMIN_TOKEN=... btctl workers --hub 127.0.0.1:7070 --insecure --json
`

const usageJobs = `Usage: btctl jobs [flags]

List the jobs one hub has in flight (AdminService.ListJobs): pending,
offered, running, orphaned or publishing, and the stage (clone, build,
push) a running job's worker last reported. Finished jobs are on
status.queue (btctl watch). Needs the admin token.

Examples:
  btctl jobs --hub hub.example.com:7070 --admin-token-file admin.token
  btctl jobs --json
`

const usageDrain = `Usage: btctl drain [flags] WORKER

Ask one worker (by id, or by name when unique) to finish its running jobs and
take no new ones (AdminService.DrainWorker). Needs the admin token.

With --wait, btctl returns only once the worker is fenced (it takes no new
job: the hub offers it none and the worker has said it is draining) and idle
(no job running or offered), so an autoscaler may terminate it then. A worker
that is disconnected is not idle: it may come back with jobs.

Exit status: 0 drained (with --wait: fenced and idle), 1 no such worker,
2 usage, 3 hub unreachable, token refused, or --timeout passed.

Examples:
  btctl drain worker-7 --reason "kernel upgrade"
  btctl drain worker-7 --wait --timeout 2h && terminate-instance worker-7
  btctl drain 3f2c9a1e-... --hub hub.example.com:7070 --json
`

const usageDeny = `Usage: btctl deny [flags] WORKER

Refuse one worker from now on (AdminService.DenyWorker): its session ends at
once and every Register with its id is refused with PermissionDenied until
the hub restarts. WORKER is a worker id (or the name of a connected worker,
when unique); an id the hub has not seen yet is denied as given. Its running
jobs are reported lost after the hub's --lost-worker-grace. Use it for a
worker whose token leaked; also remove the token and SIGHUP the hub. Needs
the admin token.

Exit status: 0 denied, 2 usage, 3 hub unreachable or token refused.

Examples:
  btctl deny worker-7 --reason "token leaked"
  btctl deny 3f2c9a1e-... --hub hub.example.com:7070 --json
`

func runWorkers(ctx context.Context, args []string, e env) error {
	fs, c := newFlagSet("workers", usageWorkers, e)
	asJSON := fs.Bool("json", false, "print the ListWorkersResponse as JSON")
	if err := noArgs(fs, args, "workers"); err != nil {
		return err
	}
	hub, err := dialHub(c)
	if err != nil {
		return err
	}
	defer hub.close()
	cctx, cancel := hub.ctx(ctx)
	defer cancel()
	resp, err := hub.api.ListWorkers(cctx, &blacktreev1.ListWorkersRequest{})
	if err != nil {
		return hub.rpcErr("list workers", err)
	}
	if *asJSON {
		return printJSON(e.stdout, resp)
	}
	printWorkers(e.stdout, resp.GetWorkers(), time.Now())
	return nil
}

func runJobs(ctx context.Context, args []string, e env) error {
	fs, c := newFlagSet("jobs", usageJobs, e)
	asJSON := fs.Bool("json", false, "print the ListJobsResponse as JSON")
	if err := noArgs(fs, args, "jobs"); err != nil {
		return err
	}
	hub, err := dialHub(c)
	if err != nil {
		return err
	}
	defer hub.close()
	cctx, cancel := hub.ctx(ctx)
	defer cancel()
	resp, err := hub.api.ListJobs(cctx, &blacktreev1.ListJobsRequest{})
	if err != nil {
		return hub.rpcErr("list jobs", err)
	}
	if *asJSON {
		return printJSON(e.stdout, resp)
	}
	printJobs(e.stdout, resp.GetJobs(), time.Now())
	return nil
}

func runDrain(ctx context.Context, args []string, e env) error {
	fs, c := newFlagSet("drain", usageDrain, e)
	asJSON := fs.Bool("json", false, "print the DrainWorkerResponse as JSON")
	reason := fs.String("reason", "drained with btctl", "why, for the hub's and worker's logs")
	wait := fs.Bool("wait", false, "return once the worker is fenced and idle (see above)")
	timeout := fs.Duration("timeout", 30*time.Minute, "with --wait: how long to wait")
	worker, err := oneWorker(fs, args, "drain")
	if err != nil {
		return err
	}
	hub, err := dialHub(c)
	if err != nil {
		return err
	}
	defer hub.close()
	cctx, cancel := hub.ctx(ctx)
	defer cancel()
	resp, err := hub.api.DrainWorker(cctx, &blacktreev1.DrainWorkerRequest{WorkerId: worker, Reason: *reason})
	if err != nil {
		return hub.rpcErr("drain "+worker, err)
	}
	if *wait {
		w, err := waitDrained(ctx, hub, resp.GetWorker().GetWorkerId(), *timeout)
		if err != nil {
			return err
		}
		resp.Worker = w
	}
	if *asJSON {
		return printJSON(e.stdout, resp)
	}
	w := resp.GetWorker()
	fmt.Fprintf(e.stdout, "worker %s (%s) is %s, running %d job(s)", w.GetWorkerId(), w.GetName(), stateName(w.GetState()), len(w.GetRunningJobIds()))
	if *wait {
		fmt.Fprint(e.stdout, "; fenced and idle")
	}
	fmt.Fprintln(e.stdout)
	return nil
}

func runDeny(ctx context.Context, args []string, e env) error {
	fs, c := newFlagSet("deny", usageDeny, e)
	asJSON := fs.Bool("json", false, "print the DenyWorkerResponse as JSON")
	reason := fs.String("reason", "denied with btctl", "why, for the hub's log and the worker's refusal")
	worker, err := oneWorker(fs, args, "deny")
	if err != nil {
		return err
	}
	hub, err := dialHub(c)
	if err != nil {
		return err
	}
	defer hub.close()
	cctx, cancel := hub.ctx(ctx)
	defer cancel()
	resp, err := hub.api.DenyWorker(cctx, &blacktreev1.DenyWorkerRequest{WorkerId: worker, Reason: *reason})
	if err != nil {
		return hub.rpcErr("deny "+worker, err)
	}
	if *asJSON {
		return printJSON(e.stdout, resp)
	}
	ended := "it had no live session"
	if resp.GetSessionEnded() {
		ended = "its session was ended"
	}
	fmt.Fprintf(e.stdout, "worker %s is denied; %s\n", resp.GetWorkerId(), ended)
	return nil
}

// oneWorker parses a command's flags and its one WORKER argument.
func oneWorker(fs *flag.FlagSet, args []string, name string) (string, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usageErr("%s takes exactly one WORKER (id or name), got %d arguments (see btctl %s --help)", name, len(pos), name)
	}
	return pos[0], nil
}

func noArgs(fs *flag.FlagSet, args []string, name string) error {
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("%s takes no arguments, got %q (see btctl %s --help)", name, pos[0], name)
	}
	return nil
}

func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return infraErr("encode answer: %v", err)
	}
	fmt.Fprintln(w, string(b))
	return nil
}

func printWorkers(w io.Writer, workers []*blacktreev1.WorkerInfo, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tSLOTS\tRUNNING\tWARM KEYS\tLAST HEARTBEAT\tADDRESS")
	for _, wk := range workers {
		running := "-"
		if ids := wk.GetRunningJobIds(); len(ids) > 0 {
			running = fmt.Sprintf("%d: %s", len(ids), strings.Join(ids, ","))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", wk.GetWorkerId(), orDash(wk.GetName()), stateName(wk.GetState()),
			wk.GetSlots(), running, len(wk.GetCache().GetBuildKeys()), ago(wk.GetLastHeartbeat(), now), orDash(wk.GetAddress()))
	}
	_ = tw.Flush()
	if len(workers) == 0 {
		fmt.Fprintln(w, "(no workers)")
	}
}

func printJobs(w io.Writer, jobs []*blacktreev1.JobInfo, now time.Time) {
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].GetJobId() < jobs[j].GetJobId() })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB ID\tSTATE\tSTAGE\tWORKER\tREPO\tIMAGE\tRECEIVED")
	for _, j := range jobs {
		state := strings.ToLower(strings.TrimPrefix(j.GetState().String(), "JOB_STATE_"))
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.GetJobId(), state, jobStage(j), orDash(j.GetWorkerId()), j.GetRepoUrl(), j.GetImageName(), ago(j.GetReceivedAt(), now))
	}
	_ = tw.Flush()
	if len(jobs) == 0 {
		fmt.Fprintln(w, "(no jobs in flight)")
	}
}

// jobStage is the stage a running job's worker last reported ("build"),
// "-" when none is known.
func jobStage(j *blacktreev1.JobInfo) string {
	if j.GetStage() == blacktreev1.JobStage_JOB_STAGE_UNSPECIFIED {
		return "-"
	}
	return jobspec.StageName(j.GetStage())
}

func stateName(s blacktreev1.WorkerState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "WORKER_STATE_"))
}

// ago renders a timestamp as an age: "3s ago".
func ago(ts *timestamppb.Timestamp, now time.Time) string {
	if ts == nil {
		return "-"
	}
	d := now.Sub(ts.AsTime())
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String() + " ago"
}
