package jobspec

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/protoredact"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The examples of docs/protocol.md#queues, byte for byte.
const (
	seedRequest  = `{"jobId":"unique-id-123","repoUrl":"user/reponame","branch":"main","dockerfilePath":"Dockerfile","contextDir":".","imageName":"myapp:latest","githubToken":"<token>"}`
	seedResponse = `{"jobId":"unique-id-123","success":true,"logs":"<build logs>","imageUrl":"registry.example.com/myapp:latest","error":""}`
)

func jsonObject(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("json.Unmarshal(%s) = %v", b, err)
	}
	return m
}

func TestSeedRequestRoundTrip(t *testing.T) {
	req, d, err := DecodeRequest([]byte(seedRequest))
	if err != nil {
		t.Fatalf("DecodeRequest(seed) = %v, want nil", err)
	}
	want := &blacktreev1.JobRequest{JobId: "unique-id-123", RepoUrl: "user/reponame", Branch: "main",
		DockerfilePath: "Dockerfile", ContextDir: ".", ImageName: "myapp:latest", GithubToken: "<token>"}
	if req.GetJobId() != want.JobId || req.GetRepoUrl() != want.RepoUrl || req.GetBranch() != want.Branch ||
		req.GetDockerfilePath() != want.DockerfilePath || req.GetContextDir() != want.ContextDir ||
		req.GetImageName() != want.ImageName || req.GetGithubToken() != want.GithubToken {
		t.Errorf("DecodeRequest(seed) = %v, want %v", req, want)
	}
	if len(d.UnknownFields) != 0 {
		t.Errorf("DecodeRequest(seed).UnknownFields = %v, want none", d.UnknownFields)
	}
	out, err := EncodeRequest(req)
	if err != nil {
		t.Fatalf("EncodeRequest() = %v", err)
	}
	if got, want := jsonObject(t, out), jsonObject(t, []byte(seedRequest)); !reflect.DeepEqual(got, want) {
		t.Errorf("EncodeRequest() = %s, want the seed's %s", out, seedRequest)
	}
}

func TestSeedResponseRoundTrip(t *testing.T) {
	resp, err := DecodeResponse([]byte(seedResponse))
	if err != nil {
		t.Fatalf("DecodeResponse(seed) = %v", err)
	}
	out, err := EncodeResponse(resp)
	if err != nil {
		t.Fatalf("EncodeResponse() = %v", err)
	}
	got := jsonObject(t, out)
	for k, v := range jsonObject(t, []byte(seedResponse)) {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("EncodeResponse()[%q] = %v, want %v (from %s)", k, got[k], v, out)
		}
	}
	// The five core fields are present even when empty.
	out, err = EncodeResponse(&blacktreev1.JobResponse{JobId: "j"})
	if err != nil {
		t.Fatalf("EncodeResponse(empty) = %v", err)
	}
	got = jsonObject(t, out)
	for _, k := range []string{"jobId", "success", "logs", "imageUrl", "error"} {
		if _, ok := got[k]; !ok {
			t.Errorf("EncodeResponse(empty) = %s, missing %q", out, k)
		}
	}
}

func TestDecodeRequestUnknownFieldsTolerated(t *testing.T) {
	body := `{"jobId":"j1","repoUrl":"a/b","imageName":"x","priority":5,"extra":{"a":1}}`
	req, d, err := DecodeRequest([]byte(body))
	if err != nil {
		t.Fatalf("DecodeRequest() = %v, want nil", err)
	}
	if req.GetJobId() != "j1" {
		t.Errorf("DecodeRequest().JobId = %q, want j1", req.GetJobId())
	}
	if want := []string{"extra", "priority"}; !reflect.DeepEqual(d.UnknownFields, want) {
		t.Errorf("DecodeRequest().UnknownFields = %v, want %v", d.UnknownFields, want)
	}
}

func TestDecodeRequestErrors(t *testing.T) {
	const token = "ghp_SENTINELTOKEN1234567890"
	tests := []struct {
		name      string
		body      []byte
		wantJobID string
		wantIn    string
	}{
		{name: "malformed JSON", body: []byte(`{"jobId":`), wantIn: "not a JSON object"},
		{name: "not UTF-8", body: []byte("{\"jobId\":\"a\xff\"}"), wantIn: "UTF-8"},
		{name: "array", body: []byte(`[1,2]`), wantIn: "want object"},
		{name: "oversized", body: []byte(`{"jobId":"big-1","logs":"` + strings.Repeat("x", MaxRequestBytes) + `"}`), wantJobID: "big-1", wantIn: "limit"},
		{name: "wrong type keeps jobId", body: []byte(`{"jobId":"typed-1","repoUrl":5,"githubToken":"` + token + `"}`), wantJobID: "typed-1", wantIn: "repoUrl"},
		{name: "token of wrong type not echoed", body: []byte(`{"jobId":"typed-2","githubToken":["` + token + `"]}`), wantJobID: "typed-2", wantIn: "githubToken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := DecodeRequest(tt.body)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("DecodeRequest() = %v, want *DecodeError", err)
			}
			if de.JobID != tt.wantJobID {
				t.Errorf("DecodeRequest().JobID = %q, want %q", de.JobID, tt.wantJobID)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("DecodeRequest() error = %q, want it to mention %q", err, tt.wantIn)
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("DecodeRequest() error = %q, leaks the token", err)
			}
		})
	}
}

func TestRequestFormattingNeverPrintsToken(t *testing.T) {
	const token = "ghp_SENTINELTOKEN1234567890"
	req := &blacktreev1.JobRequest{JobId: "j1", RepoUrl: "a/b", ImageName: "x", GithubToken: token}
	run := &blacktreev1.RunJob{Job: req}
	hub := &blacktreev1.HubMessage{Frame: &blacktreev1.HubMessage_RunJob{RunJob: run}}
	renderings := map[string]string{
		"Sprint(req)":      fmt.Sprint(req),
		"%v req":           fmt.Sprintf("%v", req),
		"%+v req":          fmt.Sprintf("%+v", req),
		"%s req":           fmt.Sprintf("%s", req),
		"%q req":           fmt.Sprintf("%q", req),
		"%v run":           fmt.Sprintf("%v", run),
		"%+v hub":          fmt.Sprintf("%+v", hub),
		"Println":          fmt.Sprintln(req, run, hub),
		"protoredact.JSON": protoredact.JSON(req),
		"protoredact.Text": protoredact.Text(hub),
		"LogFields":        fmt.Sprint(LogFields(req)...),
	}
	for name, s := range renderings {
		if strings.Contains(s, token) {
			t.Errorf("%s = %s, leaks the token", name, s)
		}
		if !strings.Contains(s, "j1") {
			t.Errorf("%s = %s, want it to still show the job id", name, s)
		}
	}
	if !strings.Contains(fmt.Sprint(req), protoredact.Placeholder) {
		t.Errorf("Sprint(req) = %s, want %s in place of the token", fmt.Sprint(req), protoredact.Placeholder)
	}
	if req.GetGithubToken() != token {
		t.Errorf("after formatting, GithubToken = %q, want it unchanged", req.GetGithubToken())
	}
	var nilReq *blacktreev1.JobRequest
	if got := fmt.Sprint(nilReq); got != "<nil>" {
		t.Errorf("Sprint(nil) = %q, want <nil>", got)
	}
}

func BenchmarkDecodeRequest(b *testing.B) {
	body := []byte(`{"jobId":"bench-000123","repoUrl":"https://github.com/octo/app","branch":"main","dockerfilePath":"Dockerfile","contextDir":".","imageName":"octo/app:latest","githubToken":"ghp_0123456789abcdefghijklmnopqrstuvwxyzAB","workerLabels":{"arch":"amd64"},"timeoutSeconds":600}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := DecodeRequest(body); err != nil {
			b.Fatal(err)
		}
	}
}
