package docker

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

func TestCheckOffline(t *testing.T) {
	tests := []struct {
		name, dockerfile string
		buildArgs        map[string]string
		wantInError      string // "" wants nil
	}{
		{name: "copy and local add", dockerfile: "FROM scratch\nCOPY a /a\nADD b.tar /b/\nADD [\"c d\", \"/c\"]\n"},
		{name: "add https", dockerfile: "FROM scratch\nADD https://example.com/x /x\n", wantInError: "line 2: ADD https://example.com/x"},
		{name: "add http, lower case, flags", dockerfile: "FROM scratch\nadd --chown=1:1 http://169.254.169.254/latest /m\n", wantInError: "line 2"},
		{name: "add json form", dockerfile: "FROM scratch\nADD [\"local\", \"http://example.com/x\", \"/x/\"]\n", wantInError: "http://example.com/x"},
		{name: "add continued line", dockerfile: "FROM scratch\nADD \\\n  https://example.com/x \\\n  /x\n", wantInError: "line 2"},
		{name: "add git", dockerfile: "FROM scratch\nADD git@github.com:acme/app.git /src\n", wantInError: "git@github.com"},
		{name: "add variable", dockerfile: "FROM scratch\nARG U=https://example.com/x\nADD ${U} /x\n", wantInError: "has a variable"},
		{name: "syntax directive", dockerfile: "# syntax=docker/dockerfile:1\nFROM scratch\n", wantInError: "`# syntax=`"},
		{name: "syntax build arg", dockerfile: "FROM scratch\n", buildArgs: map[string]string{"BUILDKIT_SYNTAX": "evil/frontend"}, wantInError: "BUILDKIT_SYNTAX"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "Dockerfile")
			if err := os.WriteFile(path, []byte(tt.dockerfile), 0o644); err != nil {
				t.Fatal(err)
			}
			err := checkOffline(path, "Dockerfile", tt.buildArgs)
			if tt.wantInError == "" {
				if err != nil {
					t.Errorf("checkOffline() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrNeedsNetwork) || !strings.Contains(err.Error(), tt.wantInError) || !strings.Contains(err.Error(), "--build-network none") {
				t.Errorf("checkOffline() = %v, want ErrNeedsNetwork naming %q", err, tt.wantInError)
			}
		})
	}
}

// TestAddURLRefusedWithoutNetwork: with the default build network the
// engine itself fetches an ADD <url> (the loopback server sees it); with
// --build-network none the job is refused before any build and the
// server sees nothing.
func TestAddURLRefusedWithoutNetwork(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte("fetched by the engine\n"))
	}))
	defer srv.Close()
	dockerfile := "FROM scratch\nADD " + srv.URL + "/payload /payload\n"

	e := newEnv(t, nil)
	e.git.addRepo(t, "acme/fetch", repoFiles{files: map[string]string{"Dockerfile": dockerfile}})
	resp, _ := runOK(t, e, request("job-fetch", "acme/fetch"))
	if hits.Load() == 0 {
		t.Fatalf("with the default network, the server saw no fetch; job %q", resp.GetImageUrl())
	}

	hits.Store(0)
	e = newEnv(t, func(c *Config) { c.BuildNetwork = "none" })
	e.git.addRepo(t, "acme/fetch", repoFiles{files: map[string]string{"Dockerfile": dockerfile}})
	logs := newLogSink("")
	resp = e.exec.Run(context.Background(), request("job-nofetch", "acme/fetch"), logs)
	if resp.GetSuccess() || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_VALIDATE {
		t.Fatalf("Run() = success %v stage %v error %q, want failure at VALIDATE", resp.GetSuccess(), resp.GetFailedStage(), resp.GetError())
	}
	if msg := resp.GetError(); !strings.Contains(msg, "ADD "+srv.URL+"/payload") || !strings.Contains(msg, "--build-network none") {
		t.Errorf("Run().Error = %q, want it to name the ADD and the build network", msg)
	}
	if strings.Contains(logs.String(), "build:") || hits.Load() != 0 {
		t.Errorf("a build ran (server hits %d):\n%s", hits.Load(), logs.String())
	}
}
