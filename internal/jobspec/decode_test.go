package jobspec

import (
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
)

// checkStrictMatchesTolerant decodes body both ways. Where decodeStrict
// answers, decodeTolerant must accept the body with no unknown keys and
// give an equal message. It reports whether decodeStrict answered.
func checkStrictMatchesTolerant(t testing.TB, body []byte) bool {
	t.Helper()
	strict, ok := decodeStrict(body)
	if !ok {
		return false
	}
	tolerant, d, err := decodeTolerant(body)
	if err != nil {
		t.Fatalf("decodeStrict(%q) ok, but decodeTolerant() = %v", body, err)
	}
	if len(d.UnknownFields) != 0 {
		t.Fatalf("decodeStrict(%q) ok, but decodeTolerant() found unknown keys %v", body, d.UnknownFields)
	}
	if !proto.Equal(strict, tolerant) {
		t.Fatalf("decodeStrict(%q) = %v, want %v (decodeTolerant)", body, strict, tolerant)
	}
	return true
}

func TestDecodeStrictMatchesTolerant(t *testing.T) {
	// The shapes control planes send take the one-pass path.
	strict := []string{
		seedRequest,
		`{}`,
		" \t\r\n{ \"jobId\" :\n\"a\" ,\t\"timeoutSeconds\" : 7 } \n",
		`{"job_id":"a","repo_url":"o/r","dockerfile_path":"D","context_dir":"c","image_name":"i","github_token":"t","worker_labels":{"k":"v"},"timeout_seconds":3}`,
		`{"jobId":"a","workerLabels":{"arch":"arm64","gpu":""},"timeoutSeconds":4294967295}`,
		`{"jobId":"a\"b\\c\/d\b\f\n\r\t","githubToken":"\u00e9\u4e2d\u0000x","branch":"é中🐳"}`,
	}
	// Anything else: the tolerant path decides, and where the strict one
	// answers after all it must agree.
	other := []string{
		`{"jobId":"a","priority":"high"}`,
		`{"jobId":"a","jobId":"b"}`,
		`{"jobId":"a","job_id":"b"}`,
		`{"workerLabels":{"k":"a","k":"b"}}`,
		`{"jobId":null}`,
		`{"workerLabels":null}`,
		`{"jobId":5}`,
		`{"timeoutSeconds":"5"}`,
		`{"timeoutSeconds":-1}`,
		`{"timeoutSeconds":4294967296}`,
		`{"timeoutSeconds":1.0}`,
		`{"timeoutSeconds":1e2}`,
		`[]`,
		`"jobId"`,
		``,
		`{"jobId":"a"}x`,
		`{"jobId":"a",}`,
		`{"jobId":"\ud83d\udc33"}`,
		`{"jobId":"\ud800"}`,
		`{"workerLabels":["a"]}`,
		`{"jobId":true}`,
	}
	for _, body := range strict {
		if !checkStrictMatchesTolerant(t, []byte(body)) {
			t.Errorf("decodeStrict(%q) ok = false, want true", body)
		}
	}
	for _, body := range append(strict, other...) {
		checkStrictMatchesTolerant(t, []byte(body))
		// Whichever path decides, DecodeRequest answers like the tolerant
		// path alone.
		req, d, err := DecodeRequest([]byte(body))
		want, wantD, wantErr := decodeTolerant([]byte(body))
		if (err != nil) != (wantErr != nil) || (err != nil && err.Error() != wantErr.Error()) {
			t.Fatalf("DecodeRequest(%q) error = %v, want %v", body, err, wantErr)
		}
		if !proto.Equal(req, want) || strings.Join(d.UnknownFields, ",") != strings.Join(wantD.UnknownFields, ",") {
			t.Errorf("DecodeRequest(%q) = %v %v, want %v %v", body, req, d, want, wantD)
		}
	}
}

// FuzzDecodeStrict checks the one-pass path against the tolerant one for
// any valid UTF-8 body (DecodeRequest rejects the rest before either).
func FuzzDecodeStrict(f *testing.F) {
	f.Add([]byte(seedRequest))
	f.Add([]byte(`{"job_id":"a","workerLabels":{"k":"v","x":"\u00e9"},"timeoutSeconds":42}`))
	f.Add([]byte(`{"jobId":"a","jobId":"b"}`))
	f.Add([]byte(`{"timeoutSeconds":1e2}`))
	f.Add([]byte(`{"jobId":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if !utf8.Valid(body) || len(body) > MaxRequestBytes {
			return
		}
		checkStrictMatchesTolerant(t, body)
	})
}
