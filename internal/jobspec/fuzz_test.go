package jobspec

import (
	"errors"
	"strings"
	"testing"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// FuzzDecodeValidate feeds arbitrary bodies through the hub's intake path.
// Invariants: no panic; every outcome is a request, a *DecodeError or a
// *ValidationError; a rejected body's error never echoes the token; an
// accepted request re-encodes and decodes to the same job id.
func FuzzDecodeValidate(f *testing.F) {
	f.Add([]byte(seedRequest))
	f.Add([]byte(`{"jobId":"j","repoUrl":"https://github.com/a/b","imageName":"a","githubToken":"SECRETSECRET"}`))
	f.Add([]byte(`{"jobId":"j","repoUrl":"file:///etc","imageName":"a"}`))
	f.Add([]byte(`{"jobId":"j","dockerfilePath":"../x"}`))
	f.Add([]byte("{\"jobId\":\"\xff\"}"))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, _, err := DecodeRequest(body)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("DecodeRequest() = %T %v, want *DecodeError", err, err)
			}
			return
		}
		err = Validate(req, Policy{})
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() = %T %v, want *ValidationError", err, err)
			}
			if tok := req.GetGithubToken(); len(tok) >= 8 && strings.Contains(err.Error(), tok) {
				t.Fatalf("Validate() = %q, leaks the token", err)
			}
			return
		}
		out, err := EncodeRequest(req)
		if err != nil {
			t.Fatalf("EncodeRequest() = %v", err)
		}
		again, _, err := DecodeRequest(out)
		if err != nil || again.GetJobId() != req.GetJobId() {
			t.Fatalf("DecodeRequest(EncodeRequest()) = %v, %v, want job %q", again, err, req.GetJobId())
		}
	})
}

// FuzzEncodeResponse checks the fast JobResponse encoder against protojson:
// same JSON after json.Compact, same error/no-error, and the output decodes
// to the input.
func FuzzEncodeResponse(f *testing.F) {
	f.Add("unique-id-123", true, "<build logs>", "registry.example.com/myapp:latest", "", "", "", int32(0), false, int64(0), int32(0), false, int64(0), int32(0))
	f.Add("j", false, "a\"b\\c\n\t\x00\x1f\u2028\u2029🐳<>&", "u", "clone: authentication failed", "w-1", "sha256:00", int32(3),
		true, int64(1700000000), int32(123_456_789), true, int64(-1), int32(5_000_000))
	f.Add("j", false, "bad \xff utf8", "", "", "", "", int32(99), true, int64(maxTimestampSeconds), int32(999_999_999), true, int64(minTimestampSeconds), int32(0))
	f.Add("", false, "", "", "", "", "", int32(-1), true, int64(maxTimestampSeconds+1), int32(-1), true, int64(0), int32(1_000_000_000))
	f.Fuzz(func(t *testing.T, jobID string, success bool, logs, imageURL, errText, workerID, digest string, stage int32,
		hasStart bool, startSecs int64, startNanos int32, hasFinish bool, finishSecs int64, finishNanos int32) {
		resp := &blacktreev1.JobResponse{JobId: jobID, Success: success, Logs: logs, ImageUrl: imageURL, Error: errText,
			WorkerId: workerID, ImageDigest: digest, FailedStage: blacktreev1.JobStage(stage)}
		if hasStart {
			resp.StartedAt = &timestamppb.Timestamp{Seconds: startSecs, Nanos: startNanos}
		}
		if hasFinish {
			resp.FinishedAt = &timestamppb.Timestamp{Seconds: finishSecs, Nanos: finishNanos}
		}
		checkSameAsProtojson(t, resp)
	})
}
