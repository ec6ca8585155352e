package jobspec

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

func TestTruncateMiddle(t *testing.T) {
	if got := TruncateMiddle("short", 10); got != "short" {
		t.Fatalf("TruncateMiddle(short) = %q", got)
	}
	head := strings.Repeat("h", 5000)
	tail := strings.Repeat("é", 5000) + "error: the build failed"
	s := head + strings.Repeat("m", 1<<20) + tail
	got := TruncateMiddle(s, 4096)
	if len(got) > 4096 || !utf8.ValidString(got) {
		t.Fatalf("len %d (want <= 4096), valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
	if !strings.HasPrefix(got, "hhhh") || !strings.HasSuffix(got, "error: the build failed") {
		t.Fatalf("head or tail lost: %q ... %q", got[:10], got[len(got)-30:])
	}
	i := strings.Index(got, "\n… ")
	j := strings.Index(got, " bytes truncated …\n")
	if i < 0 || j < i {
		t.Fatalf("no marker in %q", got)
	}
	var n int
	if _, err := fmt.Sscanf(got[i+len("\n… "):j], "%d", &n); err != nil {
		t.Fatal(err)
	}
	if kept := len(got) - (j + len(" bytes truncated …\n") - i); kept+n != len(s) {
		t.Fatalf("kept %d + cut %d != %d", kept, n, len(s))
	}
}

func TestBoundResponse(t *testing.T) {
	good := "sha256:" + strings.Repeat("ab", 32)
	r := BoundResponse(&blacktreev1.JobResponse{
		Success:     true,
		ImageUrl:    "r.example/app:1",
		ImageDigest: good,
		Logs:        strings.Repeat("x", 1<<20),
		Error:       strings.Repeat("e", 1<<20),
	}, Bounds{LogBytes: 1000, ErrorBytes: 500})
	if !r.Success || r.ImageDigest != good || len(r.Logs) > 1000 || len(r.Error) > 500 {
		t.Fatalf("bounded success: success %v digest %q logs %d error %d", r.Success, r.ImageDigest, len(r.Logs), len(r.Error))
	}
	for _, bad := range []*blacktreev1.JobResponse{
		{Success: true, ImageUrl: "r/app", ImageDigest: "sha256:" + strings.Repeat("AB", 32)},
		{Success: true, ImageUrl: "r/app", ImageDigest: "md5:00"},
		{Success: true, ImageUrl: strings.Repeat("a", MaxImageURLBytes+1), ImageDigest: good},
		{Success: true, ImageUrl: "r/\xff", ImageDigest: good},
	} {
		r := BoundResponse(bad, Bounds{})
		if r.Success || r.ImageUrl != "" || r.ImageDigest != "" || r.FailedStage != blacktreev1.JobStage_JOB_STAGE_PUSH || !strings.Contains(r.Error, "invalid result") {
			t.Fatalf("BoundResponse(bad) = %v", r)
		}
		if len(r.Error) > DefaultErrorBytes {
			t.Fatalf("error of %d bytes", len(r.Error))
		}
	}
}
