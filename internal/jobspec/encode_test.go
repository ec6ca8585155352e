package jobspec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// protojsonResponse is the reference encoder the fast path must match.
func protojsonResponse(resp *blacktreev1.JobResponse) ([]byte, error) {
	return protojson.MarshalOptions{EmitDefaultValues: true}.Marshal(resp)
}

func compactJSON(t testing.TB, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatalf("json.Compact(%q) = %v", b, err)
	}
	return buf.String()
}

// checkSameAsProtojson asserts that the fast encoder's output for resp is
// valid JSON, equal to protojson's after json.Compact, and decodes back to
// resp. It returns whether the fast path handled resp (false: fallback).
func checkSameAsProtojson(t testing.TB, resp *blacktreev1.JobResponse) bool {
	t.Helper()
	want, wantErr := protojsonResponse(resp)
	fast, ok := appendResponse(nil, resp)
	got, err := EncodeResponse(resp)
	if wantErr != nil {
		if ok {
			t.Fatalf("appendResponse(%v) = %s, ok, want fallback (protojson error %v)", resp, fast, wantErr)
		}
		if err == nil {
			t.Fatalf("EncodeResponse(%v) = %s, nil, want protojson's error %v", resp, got, wantErr)
		}
		if want := fmt.Sprintf("encode job response %s: %v", resp.GetJobId(), wantErr); err.Error() != want {
			t.Fatalf("EncodeResponse() error = %q, want %q", err, want)
		}
		return ok
	}
	if err != nil {
		t.Fatalf("EncodeResponse(%v) = %v, want nil", resp, err)
	}
	if ok && !bytes.Equal(fast, got) {
		t.Fatalf("EncodeResponse() = %s, want the fast path's %s", got, fast)
	}
	if !json.Valid(got) {
		t.Fatalf("EncodeResponse() = %q, not valid JSON", got)
	}
	if g, w := compactJSON(t, got), compactJSON(t, want); g != w {
		t.Fatalf("EncodeResponse() = %s, want (protojson) %s", g, w)
	}
	back := &blacktreev1.JobResponse{}
	if err := protojson.Unmarshal(got, back); err != nil {
		t.Fatalf("protojson.Unmarshal(EncodeResponse()) = %v", err)
	}
	if resp != nil && len(resp.ProtoReflect().GetUnknown()) == 0 && !proto.Equal(back, resp) {
		t.Fatalf("protojson.Unmarshal(EncodeResponse()) = %v, want %v", back, resp)
	}
	return ok
}

func ts(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

func sec(s int64, n int32) *timestamppb.Timestamp {
	return &timestamppb.Timestamp{Seconds: s, Nanos: n}
}

// realisticResponse is a finished job as a worker reports it: the seed's
// fields, ~2 KB of build log, worker id, digest and timings.
func realisticResponse() *blacktreev1.JobResponse {
	var logs strings.Builder
	for i := 1; logs.Len() < 2048; i++ {
		fmt.Fprintf(&logs, "#%d [builder %d/9] RUN go build -o /out/app ./cmd/app\n#%d DONE 0.%03ds\t\"ok\"\n", i, i%9+1, i, i*37%1000)
	}
	start := time.Date(2025, 3, 14, 15, 9, 26, 535_897_000, time.UTC)
	return &blacktreev1.JobResponse{
		JobId:       "unique-id-123",
		Success:     true,
		Logs:        logs.String(),
		ImageUrl:    "registry.example.com/myapp:latest",
		WorkerId:    "worker-7f3c9a2e",
		ImageDigest: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		StartedAt:   ts(start),
		FinishedAt:  ts(start.Add(83*time.Second + 250*time.Millisecond)),
	}
}

func TestEncodeResponseMatchesProtojson(t *testing.T) {
	seed, err := DecodeResponse([]byte(seedResponse))
	if err != nil {
		t.Fatalf("DecodeResponse(seed) = %v", err)
	}
	var controls strings.Builder
	for c := rune(0); c < 0x20; c++ {
		controls.WriteRune(c)
	}
	controls.WriteString("\x7f")
	tests := []struct {
		name     string
		resp     *blacktreev1.JobResponse
		fallback bool // protojson must do this one
	}{
		{name: "seed", resp: seed},
		{name: "all defaults", resp: &blacktreev1.JobResponse{}},
		{name: "realistic", resp: realisticResponse()},
		{name: "failed", resp: Failed("j-9", blacktreev1.JobStage_JOB_STAGE_CLONE, fmt.Errorf("clone: authentication failed"))},
		{name: "empty timestamps", resp: &blacktreev1.JobResponse{JobId: "j", StartedAt: &timestamppb.Timestamp{}, FinishedAt: &timestamppb.Timestamp{}}},
		{name: "only finishedAt", resp: &blacktreev1.JobResponse{JobId: "j", FinishedAt: sec(1700000000, 0)}},
		{name: "timestamp no fraction", resp: &blacktreev1.JobResponse{StartedAt: sec(1700000000, 0)}},
		{name: "timestamp ms", resp: &blacktreev1.JobResponse{StartedAt: sec(1700000000, 5_000_000)}},
		{name: "timestamp ms 999", resp: &blacktreev1.JobResponse{StartedAt: sec(1700000000, 999_000_000)}},
		{name: "timestamp µs", resp: &blacktreev1.JobResponse{StartedAt: sec(1700000000, 123_456_000)}},
		{name: "timestamp µs small", resp: &blacktreev1.JobResponse{StartedAt: sec(1700000000, 1_000)}},
		{name: "timestamp ns", resp: &blacktreev1.JobResponse{StartedAt: sec(1700000000, 123_456_789)}},
		{name: "timestamp ns 1", resp: &blacktreev1.JobResponse{StartedAt: sec(1700000000, 1)}},
		{name: "timestamp ns max", resp: &blacktreev1.JobResponse{StartedAt: sec(1700000000, 999_999_999)}},
		{name: "timestamp epoch minus 1ns", resp: &blacktreev1.JobResponse{StartedAt: sec(-1, 999_999_999)}},
		{name: "timestamp pre-1970", resp: &blacktreev1.JobResponse{StartedAt: ts(time.Date(1969, 7, 20, 20, 17, 40, 0, time.UTC))}},
		{name: "timestamp 1900 not leap", resp: &blacktreev1.JobResponse{StartedAt: ts(time.Date(1900, 2, 28, 23, 59, 59, 0, time.UTC)), FinishedAt: ts(time.Date(1900, 3, 1, 0, 0, 0, 0, time.UTC))}},
		{name: "timestamp 2000 leap day", resp: &blacktreev1.JobResponse{StartedAt: ts(time.Date(2000, 2, 29, 12, 0, 0, 0, time.UTC))}},
		{name: "timestamp 2024-12-31", resp: &blacktreev1.JobResponse{StartedAt: ts(time.Date(2024, 12, 31, 23, 59, 59, 0, time.UTC))}},
		{name: "timestamp year 1 min", resp: &blacktreev1.JobResponse{StartedAt: sec(minTimestampSeconds, 0)}},
		{name: "timestamp year 1 ns", resp: &blacktreev1.JobResponse{StartedAt: sec(minTimestampSeconds, 7)}},
		{name: "timestamp year 999", resp: &blacktreev1.JobResponse{StartedAt: ts(time.Date(999, 12, 31, 1, 2, 3, 0, time.UTC))}},
		{name: "timestamp year 9999", resp: &blacktreev1.JobResponse{StartedAt: ts(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))}},
		{name: "timestamp year 9999 max", resp: &blacktreev1.JobResponse{StartedAt: sec(maxTimestampSeconds, 999_999_999)}},
		{name: "timestamp non-UTC source", resp: &blacktreev1.JobResponse{StartedAt: ts(time.Date(2025, 1, 1, 1, 30, 0, 0, time.FixedZone("x", 5*3600+1800)))}},
		{name: "quotes and backslashes", resp: &blacktreev1.JobResponse{JobId: `j"1\`, Logs: `say "hi" \ C:\path\n \"`, Error: `"`, ImageUrl: `\`}},
		{name: "control characters", resp: &blacktreev1.JobResponse{Logs: controls.String(), Error: "\x00", WorkerId: "\x1f\x1e"}},
		{name: "tabs and newlines", resp: &blacktreev1.JobResponse{Logs: "line 1\n\tline 2\r\nline 3\n\n", Error: "a\tb"}},
		{name: "line and paragraph separators", resp: &blacktreev1.JobResponse{Logs: "a\u2028b\u2029c", Error: "\u2028"}},
		{name: "non-BMP emoji", resp: &blacktreev1.JobResponse{Logs: "built 🐳🚀 ok 𝄞", JobId: "😀"}},
		{name: "HTML characters", resp: &blacktreev1.JobResponse{Logs: "<script>alert('x')</script> & a > b", Error: "<>&"}},
		{name: "non-ASCII", resp: &blacktreev1.JobResponse{Logs: "Grüße, 日本語, Ελληνικά, \u00a0nbsp, \ufeffbom", Error: "é"}},
		{name: "literal replacement character", resp: &blacktreev1.JobResponse{Logs: "a\ufffdb", Error: "\ufffd"}},
		{name: "noncharacters", resp: &blacktreev1.JobResponse{Logs: "\uffff\U0010ffff\ufffe"}},
		{name: "long logs", resp: &blacktreev1.JobResponse{JobId: "big", Logs: strings.Repeat("Step 1/8 : FROM golang:1.22 AS build \"q\"\n", 25_000)}},
		{name: "all fields set", resp: &blacktreev1.JobResponse{JobId: "id", Success: true, Logs: "l", ImageUrl: "u", Error: "e", WorkerId: "w", ImageDigest: "d",
			FailedStage: blacktreev1.JobStage_JOB_STAGE_PUSH, StartedAt: sec(1, 2), FinishedAt: sec(3, 4_000)}},
		{name: "unknown enum number", resp: &blacktreev1.JobResponse{FailedStage: 99}, fallback: true},
		{name: "negative enum number", resp: &blacktreev1.JobResponse{FailedStage: -1}, fallback: true},
		{name: "nil message", resp: nil, fallback: true},
	}
	for n, name := range blacktreev1.JobStage_name {
		tests = append(tests, struct {
			name     string
			resp     *blacktreev1.JobResponse
			fallback bool
		}{name: "stage " + name, resp: &blacktreev1.JobResponse{JobId: "s", FailedStage: blacktreev1.JobStage(n)}})
	}
	withUnknown := realisticResponse()
	withUnknown.ProtoReflect().SetUnknown(protoreflect.RawFields{0x58, 0x01}) // field 11, varint 1
	tests = append(tests, struct {
		name     string
		resp     *blacktreev1.JobResponse
		fallback bool
	}{name: "unknown fields", resp: withUnknown, fallback: true})

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if ok := checkSameAsProtojson(t, tt.resp); ok != !tt.fallback {
				t.Errorf("appendResponse() ok = %v, want %v", ok, !tt.fallback)
			}
		})
	}
}

// TestEncodeResponseExact pins the fast path's bytes for a few inputs, so
// the escaping choices (those json.Compact cannot see) stay protojson's.
func TestEncodeResponseExact(t *testing.T) {
	tests := []struct {
		name string
		resp *blacktreev1.JobResponse
		want string
	}{
		{
			name: "seed",
			resp: &blacktreev1.JobResponse{JobId: "unique-id-123", Success: true, Logs: "<build logs>", ImageUrl: "registry.example.com/myapp:latest"},
			want: `{"jobId":"unique-id-123","success":true,"logs":"<build logs>","imageUrl":"registry.example.com/myapp:latest","error":"","workerId":"","imageDigest":"","failedStage":"JOB_STAGE_UNSPECIFIED"}`,
		},
		{
			name: "escapes",
			resp: &blacktreev1.JobResponse{Logs: "\"\\\b\f\n\r\t\x00\x01\x1f\x7f<>&\u2028\u2029é🐳"},
			want: `{"jobId":"","success":false,"logs":"\"\\\b\f\n\r\t\u0000\u0001\u001f` + "\x7f<>&\u2028\u2029é🐳" + `","imageUrl":"","error":"","workerId":"","imageDigest":"","failedStage":"JOB_STAGE_UNSPECIFIED"}`,
		},
		{
			name: "timestamps",
			resp: &blacktreev1.JobResponse{FailedStage: blacktreev1.JobStage_JOB_STAGE_BUILD, StartedAt: sec(-1, 500_000_000), FinishedAt: sec(maxTimestampSeconds, 1_000)},
			want: `{"jobId":"","success":false,"logs":"","imageUrl":"","error":"","workerId":"","imageDigest":"","failedStage":"JOB_STAGE_BUILD",` +
				`"startedAt":"1969-12-31T23:59:59.500Z","finishedAt":"9999-12-31T23:59:59.000001Z"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := appendResponse(nil, tt.resp)
			if !ok || string(got) != tt.want {
				t.Errorf("appendResponse() = %s, %v, want %s, true", got, ok, tt.want)
			}
			checkSameAsProtojson(t, tt.resp)
		})
	}
}

func TestEncodeResponseErrorsLikeProtojson(t *testing.T) {
	tests := []struct {
		name string
		resp *blacktreev1.JobResponse
	}{
		{name: "invalid UTF-8 jobId", resp: &blacktreev1.JobResponse{JobId: "j\xff"}},
		{name: "invalid UTF-8 logs", resp: &blacktreev1.JobResponse{JobId: "j", Logs: "ok\xc3("}},
		{name: "invalid UTF-8 imageUrl", resp: &blacktreev1.JobResponse{ImageUrl: "\x80"}},
		{name: "invalid UTF-8 error", resp: &blacktreev1.JobResponse{Error: "truncated \xe2\x82"}},
		{name: "invalid UTF-8 workerId", resp: &blacktreev1.JobResponse{WorkerId: "\xed\xa0\x80"}},   // surrogate
		{name: "invalid UTF-8 imageDigest", resp: &blacktreev1.JobResponse{ImageDigest: "\xc0\xaf"}}, // overlong
		{name: "seconds before year 1", resp: &blacktreev1.JobResponse{JobId: "j", StartedAt: sec(minTimestampSeconds-1, 0)}},
		{name: "seconds after year 9999", resp: &blacktreev1.JobResponse{JobId: "j", FinishedAt: sec(maxTimestampSeconds+1, 0)}},
		{name: "negative nanos", resp: &blacktreev1.JobResponse{StartedAt: sec(0, -1)}},
		{name: "nanos a full second", resp: &blacktreev1.JobResponse{FinishedAt: sec(0, 1_000_000_000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := protojsonResponse(tt.resp); err == nil {
				t.Fatalf("protojson.Marshal(%v) = nil error, want one (test premise)", tt.resp)
			}
			if _, err := EncodeResponse(tt.resp); err == nil {
				t.Errorf("EncodeResponse(%v) = nil error, want protojson's", tt.resp)
			}
			checkSameAsProtojson(t, tt.resp)
		})
	}
}

func TestPlainRun(t *testing.T) {
	for pos := 0; pos < 16; pos++ {
		for c := 0; c < 256; c++ {
			s := []byte(strings.Repeat("a", 16))
			s[pos] = byte(c)
			want := 16
			if c < ' ' || c == '"' || c == '\\' || c >= utf8.RuneSelf {
				want = pos
			}
			if got := plainRun(string(s)); got != want {
				t.Errorf("plainRun(%q) = %d, want %d", s, got, want)
			}
		}
	}
	if got := plainRun("abcdefghij"); got != 8 {
		t.Errorf("plainRun(10 plain bytes) = %d, want 8 (partial word left to the caller)", got)
	}
}

// TestResponseLayoutMatchesDescriptor fails when JobResponse changes (a
// field added, renumbered or retyped): the fast path has switched itself
// off and encode.go needs updating.
func TestResponseLayoutMatchesDescriptor(t *testing.T) {
	if !fastResponse.ok {
		t.Fatalf("fastResponse.ok = false, want true: JobResponse no longer matches responseLayout in encode.go; update appendResponse")
	}
	fds := (&blacktreev1.JobResponse{}).ProtoReflect().Descriptor().Fields()
	var want []string
	for i := 0; i < fds.Len(); i++ {
		want = append(want, fds.Get(i).JSONName())
	}
	full := &blacktreev1.JobResponse{StartedAt: sec(0, 0), FinishedAt: sec(0, 0)}
	out, ok := appendResponse(nil, full)
	if !ok {
		t.Fatalf("appendResponse() ok = false, want true")
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	var got []string
	if _, err := dec.Token(); err != nil {
		t.Fatalf("json token = %v", err)
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatalf("json token = %v", err)
		}
		got = append(got, k.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("json value = %v", err)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("appendResponse() keys = %v, want %v (descriptor order)", got, want)
	}
	if n := len(fastResponse.stages); n != len(blacktreev1.JobStage_name) {
		t.Errorf("len(fastResponse.stages) = %d, want %d", n, len(blacktreev1.JobStage_name))
	}
}

// TestEncodeResponseDoesNotTouchFormatting: JobResponse carries no secret
// and is not an fmt.Formatter; encoding leaves the message as it was.
func TestEncodeResponseDoesNotTouchFormatting(t *testing.T) {
	resp := realisticResponse()
	if _, ok := any(resp).(fmt.Formatter); ok {
		t.Errorf("*JobResponse is an fmt.Formatter; check that EncodeResponse's fast path honours its redaction")
	}
	before := proto.Clone(resp)
	if _, err := EncodeResponse(resp); err != nil {
		t.Fatalf("EncodeResponse() = %v", err)
	}
	if !proto.Equal(resp, before) {
		t.Errorf("EncodeResponse() changed its input: %v, want %v", resp, before)
	}
	fds := resp.ProtoReflect().Descriptor().Fields()
	for i := 0; i < fds.Len(); i++ {
		if opts, _ := fds.Get(i).Options().(*descriptorpb.FieldOptions); opts.GetDebugRedact() {
			t.Errorf("JobResponse.%s is debug_redact; the fast encoder writes it verbatim", fds.Get(i).Name())
		}
	}
}

func BenchmarkEncodeResponse(b *testing.B) {
	resp := realisticResponse()
	b.Run("protojson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := protojsonResponse(resp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := EncodeResponse(resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}
