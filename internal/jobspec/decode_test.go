package jobspec

import (
	"strings"
	"testing"
	"unicode/utf8"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"google.golang.org/protobuf/proto"
)

// checkFastMatchesGeneral decodes body with both paths. Where the fast path
// answers, the general path must accept the body with no unknown keys and
// give an equal message. It reports whether the fast path answered.
func checkFastMatchesGeneral(t testing.TB, body []byte) bool {
	t.Helper()
	fast, ok := decodeRequestFast(body)
	if !ok {
		return false
	}
	slow, d, err := decodeRequestGeneral(body)
	if err != nil {
		t.Fatalf("decodeRequestFast(%q) ok, but decodeRequestGeneral() = %v", body, err)
	}
	if len(d.UnknownFields) != 0 {
		t.Fatalf("decodeRequestFast(%q) ok, but decodeRequestGeneral() found unknown keys %v", body, d.UnknownFields)
	}
	if !proto.Equal(fast, slow) {
		t.Fatalf("decodeRequestFast(%q) = %v, want %v (decodeRequestGeneral)", body, fast, slow)
	}
	return true
}

func TestDecodeRequestFastMatchesGeneral(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantFast bool // false: the general path must decide
	}{
		{name: "seed", body: seedRequest, wantFast: true},
		{name: "empty object", body: `{}`, wantFast: true},
		{name: "whitespace everywhere", body: " \t\r\n{ \"jobId\" :\n\"a\" ,\t\"timeoutSeconds\" : 7 } \n", wantFast: true},
		{name: "proto names", body: `{"job_id":"a","repo_url":"o/r","dockerfile_path":"D","context_dir":"c","image_name":"i","github_token":"t","worker_labels":{"k":"v"},"timeout_seconds":3}`, wantFast: true},
		{name: "labels and timeout", body: `{"jobId":"a","workerLabels":{"arch":"arm64","gpu":""},"timeoutSeconds":4294967295}`, wantFast: true},
		{name: "empty labels", body: `{"workerLabels":{}}`, wantFast: true},
		{name: "zero timeout", body: `{"timeoutSeconds":0}`, wantFast: true},
		{name: "escapes", body: `{"jobId":"a\"b\\c\/d\b\f\n\r\t","githubToken":"\u00e9\u4e2d\u0000x","branch":"é中🐳"}`, wantFast: true},
		{name: "escaped key", body: `{"job\u005fid":"a"}`, wantFast: true},
		{name: "escaped label key", body: `{"workerLabels":{"a\nb":"c\u0041"}}`, wantFast: true},
		{name: "empty strings", body: `{"jobId":"","branch":""}`, wantFast: true},

		{name: "unknown key", body: `{"jobId":"a","priority":"high"}`},
		{name: "duplicate field", body: `{"jobId":"a","jobId":"b"}`},
		{name: "field under both names", body: `{"jobId":"a","job_id":"b"}`},
		{name: "duplicate label", body: `{"workerLabels":{"k":"a","k":"b"}}`},
		{name: "null string", body: `{"jobId":null}`},
		{name: "null labels", body: `{"workerLabels":null}`},
		{name: "null label value", body: `{"workerLabels":{"k":null}}`},
		{name: "number for string", body: `{"jobId":5}`},
		{name: "string for number", body: `{"timeoutSeconds":"5"}`},
		{name: "negative timeout", body: `{"timeoutSeconds":-1}`},
		{name: "timeout too large", body: `{"timeoutSeconds":4294967296}`},
		{name: "timeout far too large", body: `{"timeoutSeconds":99999999999999999999999}`},
		{name: "timeout fraction", body: `{"timeoutSeconds":1.0}`},
		{name: "timeout exponent", body: `{"timeoutSeconds":1e2}`},
		{name: "timeout leading zero", body: `{"timeoutSeconds":01}`},
		{name: "array", body: `[]`},
		{name: "string body", body: `"jobId"`},
		{name: "empty body", body: ``},
		{name: "trailing garbage", body: `{"jobId":"a"}x`},
		{name: "two objects", body: `{"jobId":"a"}{}`},
		{name: "trailing comma", body: `{"jobId":"a",}`},
		{name: "missing colon", body: `{"jobId" "a"}`},
		{name: "unterminated", body: `{"jobId":"a`},
		{name: "raw newline in string", body: "{\"jobId\":\"a\nb\"}"},
		{name: "bad escape", body: `{"jobId":"a\x"}`},
		{name: "short unicode escape", body: `{"jobId":"\u12"}`},
		{name: "surrogate pair", body: `{"jobId":"\ud83d\udc33"}`},
		{name: "lone surrogate", body: `{"jobId":"\ud800"}`},
		{name: "labels as array", body: `{"workerLabels":["a"]}`},
		{name: "nested object", body: `{"jobId":{"a":"b"}}`},
		{name: "bool", body: `{"jobId":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkFastMatchesGeneral(t, []byte(tt.body)); got != tt.wantFast {
				t.Errorf("decodeRequestFast(%q) ok = %v, want %v", tt.body, got, tt.wantFast)
			}
			// Whichever path decides, DecodeRequest answers like the
			// general path alone.
			req, d, err := DecodeRequest([]byte(tt.body))
			want, wantD, wantErr := decodeRequestGeneral([]byte(tt.body))
			if (err != nil) != (wantErr != nil) || (err != nil && err.Error() != wantErr.Error()) {
				t.Fatalf("DecodeRequest() error = %v, want %v", err, wantErr)
			}
			if !proto.Equal(req, want) || strings.Join(d.UnknownFields, ",") != strings.Join(wantD.UnknownFields, ",") {
				t.Errorf("DecodeRequest() = %v %v, want %v %v", req, d, want, wantD)
			}
		})
	}
}

// TestRequestLayoutMatchesDescriptor fails when JobRequest changes under
// decode.go: the fast path would have switched itself off, or would not
// know a field's names.
func TestRequestLayoutMatchesDescriptor(t *testing.T) {
	if requestKeys == nil {
		t.Fatalf("requestKeys = nil, want the JobRequest fields: JobRequest no longer matches requestLayout in decode.go; update decodeRequestFast")
	}
	fds := (&blacktreev1.JobRequest{}).ProtoReflect().Descriptor().Fields()
	for i := 0; i < fds.Len(); i++ {
		fd := fds.Get(i)
		for _, name := range []string{fd.JSONName(), string(fd.Name())} {
			if got, ok := requestKeys[name]; !ok || got != i {
				t.Errorf("requestKeys[%q] = %d, %v, want %d", name, got, ok, i)
			}
		}
	}
	// Every string field lands in its own struct field.
	req := &blacktreev1.JobRequest{}
	for i := 0; i < fds.Len(); i++ {
		if fds.Get(i).Kind().String() != "string" {
			continue
		}
		*stringField(req, i) = fds.Get(i).JSONName()
	}
	m := req.ProtoReflect()
	for i := 0; i < fds.Len(); i++ {
		fd := fds.Get(i)
		if fd.Kind().String() == "string" && m.Get(fd).String() != fd.JSONName() {
			t.Errorf("stringField(%d) sets %v, want %s", i, m.Get(fd), fd.Name())
		}
	}
}

// TestDecodeRequestFastAllocs: the fast path allocates the message, its
// strings and nothing else for a request without escapes or labels.
func TestDecodeRequestFastAllocs(t *testing.T) {
	body := []byte(seedRequest)
	allocs := testing.AllocsPerRun(100, func() {
		if _, ok := decodeRequestFast(body); !ok {
			t.Fatal("decodeRequestFast(seed) ok = false")
		}
	})
	// The message and its seven strings.
	if allocs > 8 {
		t.Errorf("decodeRequestFast(seed) allocations = %v, want <= 8", allocs)
	}
}

// FuzzDecodeRequestFast checks the fast path against the general one for
// any valid UTF-8 body (DecodeRequest rejects the rest before either).
func FuzzDecodeRequestFast(f *testing.F) {
	f.Add([]byte(seedRequest))
	f.Add([]byte(`{"job_id":"a","workerLabels":{"k":"v","x":"\u00e9"},"timeoutSeconds":42}`))
	f.Add([]byte(`{"jobId":"a\"b\\c\/d\b\f\n\r\t\u0041","timeoutSeconds":0}`))
	f.Add([]byte(`{"jobId":"a","jobId":"b"}`))
	f.Add([]byte(`{"timeoutSeconds":1e2}`))
	f.Add([]byte(`{"jobId":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if !utf8.Valid(body) || len(body) > MaxRequestBytes {
			return
		}
		checkFastMatchesGeneral(t, body)
	})
}

func BenchmarkDecodeRequest(b *testing.B) {
	body := []byte(`{"jobId":"bench-000123","repoUrl":"https://github.com/octo/app","branch":"main","dockerfilePath":"Dockerfile","contextDir":".","imageName":"octo/app:latest","githubToken":"ghp_0123456789abcdefghijklmnopqrstuvwxyzAB","workerLabels":{"arch":"amd64"},"timeoutSeconds":600}`)
	for _, bm := range []struct {
		name   string
		decode func([]byte) (*blacktreev1.JobRequest, Decoded, error)
	}{
		{name: "general", decode: decodeRequestGeneral},
		{name: "DecodeRequest", decode: DecodeRequest},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := bm.decode(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
