package hub

import (
	"fmt"
	"strings"
	"testing"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

func TestLogTapCursorAndTail(t *testing.T) {
	tap := newLogTap()
	if _, ok := tap.LogSince("j", 0); ok {
		t.Fatalf("a job never written is known")
	}
	tap.write("j", "a\n")
	page, ok := tap.LogSince("j", 0)
	if !ok || strings.Join(page.Chunks, "") != "a\n" || page.Next != 1 || page.End != nil {
		t.Fatalf("after one chunk: %+v %v", page, ok)
	}
	changed := page.Changed
	tap.write("j", "b\n")
	select {
	case <-changed:
	default:
		t.Fatalf("a write did not close the reader's channel")
	}
	if page, _ = tap.LogSince("j", 1); strings.Join(page.Chunks, "") != "b\n" || page.Next != 2 {
		t.Fatalf("from cursor 1: %+v", page)
	}

	// Beyond the tail's bound the oldest chunks go, and a reader behind
	// is told how many it missed.
	big := strings.Repeat("x", logTapTailBytes/4)
	for range 8 {
		tap.write("j", big)
	}
	page, _ = tap.LogSince("j", 0)
	total := 0
	for _, c := range page.Chunks {
		total += len(c)
	}
	if total > logTapTailBytes || page.Skipped == 0 || page.Next != 10 || uint64(len(page.Chunks))+page.Skipped != 10 {
		t.Fatalf("tail: %d bytes, skipped %d, next %d, %d chunks", total, page.Skipped, page.Next, len(page.Chunks))
	}

	tap.finish("j", &blacktreev1.JobResponse{Success: false, FailedStage: blacktreev1.JobStage_JOB_STAGE_BUILD, Error: "exit 1"})
	tap.leave("j") // after a status: keeps the finish
	page, _ = tap.LogSince("j", 10)
	if page.End == nil || !page.End.Finished || page.End.Stage != "build" || len(page.Chunks) != 0 {
		t.Fatalf("after finish: %+v end %+v", page, page.End)
	}
	// Output after an end is a new run of the same job id: it starts
	// afresh, and a reader of the old run is woken.
	ended := page.Changed
	tap.write("j", "rerun\n")
	select {
	case <-ended:
	default:
		t.Fatalf("a new run did not wake the old run's reader")
	}
	if page, _ = tap.LogSince("j", 0); page.End != nil || page.Skipped != 0 || strings.Join(page.Chunks, "") != "rerun\n" {
		t.Fatalf("a new run of j: %+v", page)
	}

	tap.write("k", "x")
	tap.leave("k")
	if page, _ = tap.LogSince("k", 1); page.End == nil || page.End.Finished {
		t.Fatalf("a job that left: end %+v, want not finished", page.End)
	}
}

func TestLogTapBoundedJobs(t *testing.T) {
	tap := newLogTap()
	for i := range logTapJobs {
		tap.write(fmt.Sprintf("j%d", i), "x")
	}
	tap.finish("j7", &blacktreev1.JobResponse{Success: true})
	tap.write("new", "y")
	if len(tap.jobs) != logTapJobs {
		t.Fatalf("%d jobs kept, want %d", len(tap.jobs), logTapJobs)
	}
	if _, ok := tap.LogSince("j7", 0); ok {
		t.Fatalf("an ended job was kept over a running one")
	}
	if _, ok := tap.LogSince("j0", 0); !ok {
		t.Fatalf("a running job was evicted while an ended one was there")
	}
	tap.write("newer", "z")
	if _, ok := tap.LogSince("j0", 0); ok {
		t.Fatalf("with no ended job the least recently written one should go")
	}
}

func TestLogTapBoundedEndedJobs(t *testing.T) {
	tap := newLogTap()
	for i := range logTapEndedJobs + 10 {
		id := fmt.Sprintf("e%d", i)
		tap.write(id, "x")
		tap.finish(id, &blacktreev1.JobResponse{Success: true})
	}
	if len(tap.jobs) != logTapEndedJobs {
		t.Fatalf("%d ended jobs kept, want %d", len(tap.jobs), logTapEndedJobs)
	}
	if _, ok := tap.LogSince("e0", 0); ok {
		t.Fatalf("the oldest ended job was kept")
	}
	if page, ok := tap.LogSince(fmt.Sprintf("e%d", logTapEndedJobs+9), 0); !ok || page.End == nil {
		t.Fatalf("the newest ended job was not kept with its end")
	}
}
