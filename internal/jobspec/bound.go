package jobspec

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// Bounds are the largest JobResponse text fields a component passes on
// (docs/protocol.md#results). Zero means the default.
type Bounds struct {
	// LogBytes bounds logs: the head and the tail are kept around a
	// TruncatedNote (the tail holds the error).
	LogBytes int
	// ErrorBytes bounds error, kept the same way.
	ErrorBytes int
}

// Default bounds: what the worker sends.
const (
	DefaultLogBytes   = 64 << 10
	DefaultErrorBytes = 8 << 10
	// MaxImageURLBytes bounds imageUrl: a longer one is not a reference a
	// registry accepts, and the result is reported failed.
	MaxImageURLBytes = 1024
	// MaxWorkerIDBytes bounds workerId the same way.
	MaxWorkerIDBytes = 256
)

// digestRe is the only imageDigest form a result carries.
var digestRe = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// ValidDigest reports whether s is "sha256:" and 64 lowercase hex digits.
func ValidDigest(s string) bool { return digestRe.MatchString(s) }

// BoundResponse makes resp fit b, in place, and returns it:
//
//   - logs and error longer than their bound keep their head and tail
//     around a marker that says how many bytes were cut;
//   - every text field is made valid UTF-8 (protojson refuses anything
//     else);
//   - an imageUrl longer than MaxImageURLBytes, or an imageDigest that is
//     not "sha256:<64 hex>", is removed and a successful result becomes a
//     failed one (PUSH stage) that says why: a consumer must never pull a
//     reference the worker could not have pushed.
func BoundResponse(resp *blacktreev1.JobResponse, b Bounds) *blacktreev1.JobResponse {
	if b.LogBytes <= 0 {
		b.LogBytes = DefaultLogBytes
	}
	if b.ErrorBytes <= 0 {
		b.ErrorBytes = DefaultErrorBytes
	}
	var invalid []string
	if n := len(resp.ImageUrl); n > MaxImageURLBytes || !utf8.ValidString(resp.ImageUrl) {
		invalid = append(invalid, fmt.Sprintf("image URL of %d bytes is longer than %d or not UTF-8", n, MaxImageURLBytes))
		resp.ImageUrl = ""
	}
	if resp.ImageDigest != "" && !ValidDigest(resp.ImageDigest) {
		invalid = append(invalid, fmt.Sprintf("image digest %q is not sha256:<64 hex>", TruncateMiddle(strings.ToValidUTF8(resp.ImageDigest, "\uFFFD"), 80)))
		resp.ImageDigest = ""
	}
	if len(resp.WorkerId) > MaxWorkerIDBytes || !utf8.ValidString(resp.WorkerId) {
		resp.WorkerId = TruncateMiddle(strings.ToValidUTF8(resp.WorkerId, "\uFFFD"), MaxWorkerIDBytes)
	}
	if len(invalid) > 0 && resp.Success {
		resp.Success = false
		resp.FailedStage = blacktreev1.JobStage_JOB_STAGE_PUSH
		resp.ImageUrl, resp.ImageDigest = "", ""
		resp.Error = "invalid result: " + strings.Join(invalid, "; ")
	}
	resp.Error = TruncateMiddle(strings.ToValidUTF8(resp.Error, "\uFFFD"), b.ErrorBytes)
	resp.Logs = TruncateMiddle(strings.ToValidUTF8(resp.Logs, "\uFFFD"), b.LogBytes)
	return resp
}

// TruncatedNote says that n bytes were cut here: the same words
// wherever Blacktree cuts a text (TruncateMiddle puts it on a line of its
// own; the worker ends an over-long output line with it).
func TruncatedNote(n int) string { return fmt.Sprintf("… %d bytes truncated …", n) }

// TruncateMiddle returns s if it is at most limit bytes, else its first and
// last bytes (a third and two thirds of what is left once the marker is
// counted: the end of a log holds the error) around TruncatedNote, cut
// on rune boundaries. The result is never longer than limit when limit leaves
// room for the marker.
func TruncateMiddle(s string, limit int) string { return TruncateMiddleCut(s, limit, 0) }

// TruncateMiddleCut is TruncateMiddle for a text whose middle lost
// alreadyCut bytes before (the marker counts both cuts). It leaves at
// least a third of limit minus the marker off each end of a text longer than
// limit: a caller that kept only head and tail, plus a margin, loses what
// straddled its own cut.
func TruncateMiddleCut(s string, limit, alreadyCut int) string {
	if len(s) <= limit && alreadyCut == 0 {
		return s
	}
	marker := "\n" + TruncatedNote(len(s)+alreadyCut) + "\n" // the longest the count can be
	room := limit - len(marker)
	if room <= 0 { // no room for the marker: the tail is worth most
		start := len(s) - limit
		for start < len(s) && !utf8.RuneStart(s[start]) {
			start++
		}
		return s[start:]
	}
	headEnd := runeStart(s, min(room/3, len(s)))
	tailStart := runeStart(s, max(headEnd, len(s)-(room-headEnd)))
	for tailStart < len(s) && !utf8.RuneStart(s[tailStart]) {
		tailStart++
	}
	return s[:headEnd] + "\n" + TruncatedNote(tailStart-headEnd+alreadyCut) + "\n" + s[tailStart:]
}

// runeStart moves i back to the start of the rune it falls in.
func runeStart(s string, i int) int {
	if i >= len(s) {
		return len(s)
	}
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return i
}
