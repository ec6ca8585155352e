package jobspec

import (
	"strings"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// StageName is a job stage's name in messages and pages: "validate",
// "clone", "build", "push", "cancelled", …, "unspecified" for none.
func StageName(s blacktreev1.JobStage) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "JOB_STAGE_"))
}
