package jobspec

import (
	"encoding/json"
	"testing"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"google.golang.org/protobuf/proto"
)

// TestEncodeResponseKeepsFiveFields checks the status.queue shape a control
// plane relies on: jobId, success, logs, imageUrl and error are present even
// when empty, and the body decodes back to the response.
func TestEncodeResponseKeepsFiveFields(t *testing.T) {
	resp := &blacktreev1.JobResponse{
		JobId:       "unique-id-123",
		Success:     true,
		ImageUrl:    "registry.example.com/myapp:latest",
		CachedSteps: 3,
		TotalSteps:  5,
	}
	body, err := EncodeResponse(resp)
	if err != nil {
		t.Fatalf("EncodeResponse() = %v", err)
	}
	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil {
		t.Fatalf("EncodeResponse() = %s, not a JSON object: %v", body, err)
	}
	for _, key := range []string{"jobId", "success", "logs", "imageUrl", "error", "cachedSteps", "totalSteps"} {
		if _, ok := fields[key]; !ok {
			t.Errorf("EncodeResponse() = %s, missing %q", body, key)
		}
	}
	back, err := DecodeResponse(body)
	if err != nil {
		t.Fatalf("DecodeResponse(EncodeResponse()) = %v", err)
	}
	if !proto.Equal(back, resp) {
		t.Fatalf("DecodeResponse(EncodeResponse()) = %v, want %v", back, resp)
	}
}

// TestEncodeResponseRejectsInvalidUTF8 checks that a response protojson
// cannot render fails with the job's id instead of producing bad JSON.
func TestEncodeResponseRejectsInvalidUTF8(t *testing.T) {
	_, err := EncodeResponse(&blacktreev1.JobResponse{JobId: "j-1", Logs: "bad \xff"})
	if err == nil {
		t.Fatal("EncodeResponse(invalid UTF-8) = nil error")
	}
}
