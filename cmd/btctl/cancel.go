package main

import (
	"context"
	"fmt"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

const usageCancel = `Usage: btctl cancel [flags] JOBID

Cancel one job (AdminService.CancelJob), as a message on the hubs' cancel
queue does: the hub applies the cancel and passes it on to every hub. A
running job is stopped by its worker (within the worker's --cancel-grace),
a job not yet run never runs; either way its one status on the status
queue is failed, stage JOB_STAGE_CANCELLED, error "cancelled: REASON". A
job that already finished keeps its status. Needs the admin token.

Exit status: 0 cancel taken, 1 invalid job id, 2 usage, 3 hub unreachable or token refused.

Examples:
  btctl cancel build-42 --reason "superseded by build-43"
  btctl cancel build-42 --hub hub.example.com:7070 --json
`

func runCancel(ctx context.Context, args []string, e env) error {
	fs, c := newFlagSet("cancel", usageCancel, e)
	asJSON := fs.Bool("json", false, "print the CancelJobResponse as JSON")
	reason := fs.String("reason", "", "why; ends up in the job's status error")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("cancel takes exactly one JOBID, got %d arguments (see btctl cancel --help)", len(pos))
	}
	jobID := pos[0]
	hub, err := dialHub(c)
	if err != nil {
		return err
	}
	defer hub.close()
	cctx, cancel := hub.ctx(ctx)
	defer cancel()
	resp, err := hub.api.CancelJob(cctx, &blacktreev1.CancelJobRequest{JobId: jobID, Reason: *reason})
	if err != nil {
		return hub.rpcErr("cancel "+jobID, err)
	}
	if *asJSON {
		return printJSON(e.stdout, resp)
	}
	fmt.Fprintf(e.stdout, "job %s: %s", jobID, cancelOutcomeText(resp.GetOutcome()))
	if !resp.GetAnnounced() {
		fmt.Fprint(e.stdout, " (not passed on to other hubs)")
	}
	fmt.Fprintln(e.stdout)
	return nil
}

func cancelOutcomeText(o blacktreev1.CancelJobOutcome) string {
	switch o {
	case blacktreev1.CancelJobOutcome_CANCEL_JOB_OUTCOME_ANSWERED:
		return "not run yet; answered cancelled"
	case blacktreev1.CancelJobOutcome_CANCEL_JOB_OUTCOME_SENT_TO_WORKER:
		return "its worker is stopping it"
	case blacktreev1.CancelJobOutcome_CANCEL_JOB_OUTCOME_FINISHED:
		return "already finished; cancel dropped"
	default:
		return "not held by this hub; cancel passed on (a queued job is answered cancelled when delivered)"
	}
}
