package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// btctl jobs shows the stage a running job's worker reported, "-" for
// none.
func TestPrintJobsStage(t *testing.T) {
	now := time.Now()
	var out bytes.Buffer
	printJobs(&out, []*blacktreev1.JobInfo{{
		JobId:      "job-a",
		State:      blacktreev1.JobState_JOB_STATE_RUNNING,
		Stage:      blacktreev1.JobStage_JOB_STAGE_BUILD,
		WorkerId:   "w-1",
		RepoUrl:    "acme/api",
		ImageName:  "acme/api:1",
		ReceivedAt: timestamppb.New(now),
	}, {
		JobId:      "job-b",
		State:      blacktreev1.JobState_JOB_STATE_PENDING,
		RepoUrl:    "acme/web",
		ImageName:  "acme/web:1",
		ReceivedAt: timestamppb.New(now),
	}}, now)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("printJobs() = %q, want a header and two rows", out.String())
	}
	for i, want := range []string{
		"JOB ID STATE STAGE WORKER",
		"job-a running build w-1",
		"job-b pending - -",
	} {
		if got := strings.Join(strings.Fields(lines[i]), " "); !strings.HasPrefix(got, want+" ") {
			t.Errorf("printJobs() line %d = %q, want it to start with %q", i, lines[i], want)
		}
	}
}
