package devenv

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestGitServerDemandsToken(t *testing.T) {
	if err := CheckGit(); err != nil {
		t.Fatalf("CheckGit() = %v; run scripts/ensure-tools", err)
	}
	g, err := StartGitServer(t.TempDir(), "s3cret-token")
	if err != nil {
		t.Fatalf("StartGitServer() = %v", err)
	}
	t.Cleanup(func() { g.Close() })
	if err := g.CreateRepo("acme/app", "main", map[string]string{"sub/Dockerfile": "FROM scratch\n", "link": "symlink:../x"}); err != nil {
		t.Fatalf("CreateRepo() = %v", err)
	}
	tests := []struct {
		name    string
		pass    string
		wantErr bool
	}{
		{name: "right token", pass: "s3cret-token"},
		{name: "wrong token", pass: "nope", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "c")
			u := strings.Replace(g.URL, "http://", "http://x:"+tt.pass+"@", 1) + "/acme/app.git"
			cmd := exec.Command("git", "clone", "-q", "--depth", "1", u, dst)
			cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
			out, err := cmd.CombinedOutput()
			if (err != nil) != tt.wantErr {
				t.Fatalf("git clone = %v (%s), want error %v", err, out, tt.wantErr)
			}
			if !tt.wantErr {
				if b, err := os.ReadFile(filepath.Join(dst, "sub", "Dockerfile")); err != nil || string(b) != "FROM scratch\n" {
					t.Errorf("cloned sub/Dockerfile = %q, %v, want FROM scratch", b, err)
				}
			}
		})
	}
	if g.Denied() == 0 {
		t.Errorf("Denied() = 0, want the wrong token refused")
	}
}

func TestRegistryServesV2(t *testing.T) {
	r, err := StartRegistry()
	if err != nil {
		t.Fatalf("StartRegistry() = %v", err)
	}
	t.Cleanup(func() { r.Close() })
	resp, err := http.Get("http://" + r.Host + "/v2/")
	if err != nil {
		t.Fatalf("GET /v2/ = %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v2/ status = %d, want 200", resp.StatusCode)
	}
	http.DefaultClient.CloseIdleConnections()
}
