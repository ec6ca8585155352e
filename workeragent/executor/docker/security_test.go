package docker

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/redact"
)

func TestWrongTokenFailsCloneWithoutLeaking(t *testing.T) {
	e := newEnv(t, nil)
	e.git.addRepo(t, "acme/private", repoFiles{files: map[string]string{"Dockerfile": "FROM scratch\n"}})
	const wrong = "ghp_WrongTokenAlsoSecret_0123456789"
	for _, tok := range []string{wrong, ""} {
		req := request("job-wrong", "acme/private")
		req.GithubToken = tok
		logs := newLogSink("")
		resp := e.exec.Run(context.Background(), req, logs)
		if resp.GetSuccess() || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_CLONE {
			t.Fatalf("Run(token set: %v) = success %v stage %v, want failure at CLONE", tok != "", resp.GetSuccess(), resp.GetFailedStage())
		}
		if want := "clone: authentication failed for acme/private"; resp.GetError() != want {
			t.Errorf("Run().Error = %q, want %q", resp.GetError(), want)
		}
		js, err := protojson.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{wrong, goodToken} {
			for what, s := range map[string]string{
				"logs":          resp.GetLogs(),
				"streamed logs": logs.String(),
				"error":         resp.GetError(),
				"json":          string(js),
			} {
				if strings.Contains(s, secret) {
					t.Errorf("token appears in %s: %s", what, s)
				}
			}
		}
		if left := e.workspaceLeft(t); len(left) > 0 {
			t.Errorf("workspace left behind: %v", left)
		}
	}
	if leaks := e.git.tokenLeaks(); len(leaks) > 0 {
		t.Errorf("token sent outside the Authorization header: %v", leaks)
	}
}

func TestBrokenDockerfileFailsBuild(t *testing.T) {
	e := newEnv(t, nil)
	e.git.addRepo(t, "acme/broken", repoFiles{files: map[string]string{
		"Dockerfile":      "FROM scratch\n# a comment\nCOPY present.txt /p\nCOPY missing.txt /m\n",
		"present.txt":     "here\n",
		"leak/Dockerfile": "FROM scratch\nCOPY " + goodToken + " /x\n",
	}})
	t.Run("copy of a missing file", func(t *testing.T) {
		resp := e.exec.Run(context.Background(), request("job-broken", "acme/broken"), newLogSink(""))
		if resp.GetSuccess() || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_BUILD {
			t.Fatalf("Run() = success %v stage %v error %q, want failure at BUILD", resp.GetSuccess(), resp.GetFailedStage(), resp.GetError())
		}
		if !strings.HasPrefix(resp.GetError(), "build: Dockerfile line 4 (COPY missing.txt /m): ") {
			t.Errorf("Run().Error = %q, want it to name Dockerfile line 4", resp.GetError())
		}
		if !strings.Contains(resp.GetLogs(), "[2/2] COPY missing.txt /m\n") {
			t.Errorf("Run().Logs lacks the build output:\n%s", resp.GetLogs())
		}
		if resp.GetImageUrl() != "" {
			t.Errorf("Run().ImageUrl = %q on failure, want empty", resp.GetImageUrl())
		}
		if left := e.workspaceLeft(t); len(left) > 0 {
			t.Errorf("workspace left behind: %v", left)
		}
		assertNoLocalImage(t, e, e.regHost+"/blacktree/app:v1")
	})
	t.Run("build output scrubbed of the token", func(t *testing.T) {
		req := request("job-leak", "acme/broken")
		req.DockerfilePath, req.ContextDir = "leak/Dockerfile", "."
		logs := newLogSink("")
		resp := e.exec.Run(context.Background(), req, logs)
		if resp.GetSuccess() || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_BUILD {
			t.Fatalf("Run() = success %v stage %v error %q, want failure at BUILD", resp.GetSuccess(), resp.GetFailedStage(), resp.GetError())
		}
		js, _ := protojson.Marshal(resp)
		for what, s := range map[string]string{"streamed logs": logs.String(), "json": string(js)} {
			if strings.Contains(s, goodToken) {
				t.Errorf("token appears in %s: %s", what, s)
			}
			if !strings.Contains(s, redact.Placeholder) {
				t.Errorf("%s lacks %s where the token was: %s", what, redact.Placeholder, s)
			}
		}
	})
}

func TestUnsafeRequestsRefusedBeforeBuild(t *testing.T) {
	e := newEnv(t, nil)
	e.git.addRepo(t, "acme/tricky", repoFiles{
		files: map[string]string{
			"Dockerfile":     "FROM scratch\nCOPY Dockerfile /\n",
			"sub/Dockerfile": "FROM scratch\nCOPY Dockerfile /\n",
		},
		symlinks: map[string]string{
			"escape-dir":   "../../../../../../..",
			"abs-dir":      "/etc",
			"passwd":       "/etc/passwd",
			"sub/up":       "../../outside",
			"inside-link":  "sub",
			"Dockerfile.l": "sub/Dockerfile",
		},
	})
	tests := []struct {
		name, contextDir, dockerfile, image, repo string
		wantInError                               string
		cloned                                    bool // refused after the clone (on-disk check)
	}{
		{name: "dockerfile dotdot", dockerfile: "../Dockerfile", wantInError: "dockerfilePath"},
		{name: "dockerfile absolute", dockerfile: "/etc/passwd", wantInError: "dockerfilePath"},
		{name: "context dotdot", contextDir: "sub/../..", wantInError: "contextDir"},
		{name: "context absolute", contextDir: "/", wantInError: "contextDir"},
		{name: "context in .git", contextDir: ".git", wantInError: "contextDir"},
		{name: "context symlink escapes", contextDir: "escape-dir", wantInError: "outside the repository", cloned: true},
		// go-git checks absolute symlinks out relative to the clone root (so
		// they dangle); either way they are refused before any build.
		{name: "context symlink absolute", contextDir: "abs-dir", wantInError: "contextDir \"abs-dir\"", cloned: true},
		{name: "dockerfile symlink absolute", dockerfile: "passwd", wantInError: "dockerfilePath \"passwd\"", cloned: true},
		{name: "dockerfile through escaping dir", dockerfile: "sub/up/Dockerfile", wantInError: "dockerfilePath", cloned: true},
		{name: "dockerfile missing", dockerfile: "nope/Dockerfile", wantInError: "does not exist", cloned: true},
		{name: "image name invalid", image: "UPPER/Case:tag", wantInError: "imageName"},
		{name: "image name digest", image: "app@sha256:" + strings.Repeat("a", 64), wantInError: "imageName"},
		{name: "image name empty", image: "", wantInError: "imageName"},
		{name: "repo file scheme", repo: "file:///etc", wantInError: "repoUrl"},
		{name: "repo ssh", repo: "ssh://git@github.com/acme/tricky", wantInError: "repoUrl"},
		{name: "repo credentials in URL", repo: "https://user:pw@github.com/acme/tricky", wantInError: "repoUrl"},
		{name: "repo metadata host", repo: "https://169.254.169.254/latest", wantInError: "repoUrl"},
		{name: "repo host not allowed", repo: "https://evil.example.com/acme/tricky", wantInError: "repoUrl"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := request("job-unsafe", "acme/tricky")
			req.ContextDir, req.DockerfilePath = tc.contextDir, tc.dockerfile
			if tc.image != "" || strings.HasPrefix(tc.name, "image") {
				req.ImageName = tc.image
			}
			if tc.repo != "" {
				req.RepoUrl = tc.repo
			}
			logs := newLogSink("")
			resp := e.exec.Run(context.Background(), req, logs)
			if resp.GetSuccess() || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_VALIDATE {
				t.Fatalf("Run() = success %v stage %v error %q, want failure at VALIDATE", resp.GetSuccess(), resp.GetFailedStage(), resp.GetError())
			}
			if !strings.HasPrefix(resp.GetError(), "validate: ") || !strings.Contains(resp.GetError(), tc.wantInError) {
				t.Errorf("Run().Error = %q, want validate: ... %s", resp.GetError(), tc.wantInError)
			}
			out := logs.String()
			if strings.Contains(out, "build:") {
				t.Errorf("a build started for a refused request:\n%s", out)
			}
			if cloned := strings.Contains(out, "clone: fetching"); cloned != tc.cloned {
				t.Errorf("cloned = %v, want %v (lexical checks come before the clone):\n%s", cloned, tc.cloned, out)
			}
			if left := e.workspaceLeft(t); len(left) > 0 {
				t.Errorf("workspace left behind: %v", left)
			}
		})
	}

	// A symlink that stays inside the repository is fine.
	req := request("job-inside", "acme/tricky")
	req.ContextDir, req.DockerfilePath, req.ImageName = "inside-link", "Dockerfile.l", "inside:v1"
	if resp := e.exec.Run(context.Background(), req, newLogSink("")); !resp.GetSuccess() {
		t.Errorf("Run() with in-repo symlinks failed: %q\n%s", resp.GetError(), resp.GetLogs())
	}
}
