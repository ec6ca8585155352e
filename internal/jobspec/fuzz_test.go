package jobspec

import (
	"errors"
	"strings"
	"testing"
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
