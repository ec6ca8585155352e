package jobspec

import (
	"strings"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// MaxCancelReasonLen bounds a cancel's reason (bytes, cut on a rune
// boundary): it ends up in a status's error, which the hub bounds anyway.
const MaxCancelReasonLen = 256

// BoundCancelReason returns reason cut to MaxCancelReasonLen bytes, valid
// UTF-8, surrounding space trimmed.
func BoundCancelReason(reason string) string {
	reason = strings.TrimSpace(strings.ToValidUTF8(reason, "\uFFFD"))
	if len(reason) <= MaxCancelReasonLen {
		return reason
	}
	cut := MaxCancelReasonLen
	for cut > 0 && !isRuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// CancelledError is the error text of a cancelled job: "cancelled", or
// "cancelled: <reason>" when the cancel gave one.
func CancelledError(reason string) string {
	if reason == "" {
		return "cancelled"
	}
	return "cancelled: " + reason
}

// Cancelled is the status of a cancelled job: failed, stage
// JOB_STAGE_CANCELLED, error CancelledError(reason).
func Cancelled(jobID, reason string) *blacktreev1.JobResponse {
	return &blacktreev1.JobResponse{
		JobId:       jobID,
		Success:     false,
		Error:       CancelledError(reason),
		FailedStage: blacktreev1.JobStage_JOB_STAGE_CANCELLED,
	}
}
