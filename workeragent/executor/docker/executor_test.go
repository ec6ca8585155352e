package docker

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/client"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/workeragent/executor"
)

func request(jobID, repo string) *blacktreev1.JobRequest {
	return &blacktreev1.JobRequest{
		JobId:       jobID,
		RepoUrl:     repo,
		Branch:      "main",
		ImageName:   "app:v1",
		GithubToken: goodToken,
	}
}

func TestBuildAndPush(t *testing.T) {
	for _, builder := range []string{BuilderBuildKit, BuilderClassic} {
		t.Run(builder, func(t *testing.T) { testBuildAndPush(t, builder) })
	}
}

func testBuildAndPush(t *testing.T, builder string) {
	e := newEnv(t, func(c *Config) { c.Builder = builder })
	stepLine := map[string]string{
		BuilderBuildKit: "[1/1] COPY hello.txt",
		BuilderClassic:  "Step 2/2 : COPY hello.txt",
	}[builder]
	e.git.addRepo(t, "acme/app", repoFiles{files: map[string]string{
		"app/Dockerfile":    "FROM scratch\nCOPY hello.txt /hello.txt\n",
		"app/hello.txt":     "hello\n",
		"build/Dockerfile":  "FROM scratch\nCOPY hello.txt /from-outside.txt\n",
		"README.md":         "not in the context\n",
		"app/.git-not-skip": "kept: only .git itself is skipped\n",
	}})
	tests := []struct {
		name, contextDir, dockerfile, image string
	}{
		{name: "dockerfile in context subdir", contextDir: "app", dockerfile: "app/Dockerfile", image: "app:v1"},
		{name: "default dockerfile path", contextDir: "app", image: "app-default"},
		{name: "dockerfile outside context", contextDir: "app", dockerfile: "build/Dockerfile", image: "app-outside:v2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := request("job-ok", "acme/app")
			req.ContextDir, req.DockerfilePath, req.ImageName = tc.contextDir, tc.dockerfile, tc.image
			logs := newLogSink("")
			var stages []blacktreev1.JobStage // what the agent journals
			ctx := executor.WithStageFunc(context.Background(), func(s blacktreev1.JobStage) { stages = append(stages, s) })
			resp := e.exec.Run(ctx, req, logs)
			if !resp.GetSuccess() {
				t.Fatalf("Run() failed: error=%q stage=%v logs:\n%s", resp.GetError(), resp.GetFailedStage(), resp.GetLogs())
			}
			wantStages := []blacktreev1.JobStage{blacktreev1.JobStage_JOB_STAGE_CLONE, blacktreev1.JobStage_JOB_STAGE_BUILD, blacktreev1.JobStage_JOB_STAGE_PUSH}
			if !slices.Equal(stages, wantStages) {
				t.Errorf("stages entered = %v, want %v", stages, wantStages)
			}
			want := e.regHost + "/blacktree/" + tc.image
			if !strings.Contains(tc.image, ":") {
				want += ":latest"
			}
			if resp.GetImageUrl() != want {
				t.Errorf("Run().ImageUrl = %q, want %q", resp.GetImageUrl(), want)
			}
			if resp.GetError() != "" || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_UNSPECIFIED {
				t.Errorf("Run() error=%q stage=%v, want none", resp.GetError(), resp.GetFailedStage())
			}
			if !strings.HasPrefix(resp.GetImageDigest(), "sha256:") {
				t.Errorf("Run().ImageDigest = %q, want sha256:...", resp.GetImageDigest())
			}
			if !strings.Contains(resp.GetLogs(), stepLine) || !strings.Contains(logs.String(), stepLine) {
				t.Errorf("Run().Logs lacks the build steps:\n%s", resp.GetLogs())
			}
			if resp.GetStartedAt() == nil || resp.GetFinishedAt() == nil {
				t.Errorf("Run() started_at/finished_at missing")
			}

			// The registry holds the manifest imageUrl names, with that digest.
			ref, opts := registryRef(t, resp.GetImageUrl())
			desc, err := remote.Get(ref, opts...)
			if err != nil {
				t.Fatalf("remote.Get(%s) = %v", ref, err)
			}
			if desc.Digest.String() != resp.GetImageDigest() {
				t.Errorf("registry digest = %s, want Run().ImageDigest %s", desc.Digest, resp.GetImageDigest())
			}

			// Nothing left behind: no workspace, no local image.
			if left := e.workspaceLeft(t); len(left) > 0 {
				t.Errorf("workspace left behind: %v", left)
			}
			assertNoLocalImage(t, e, resp.GetImageUrl())
		})
	}
}

func assertNoLocalImage(t *testing.T, e *env, ref string) {
	t.Helper()
	if _, err := e.exec.docker.ImageInspect(context.Background(), ref); !client.IsErrNotFound(err) {
		t.Errorf("ImageInspect(%s) = %v, want not found (image removed after the job)", ref, err)
	}
}

// committedLayers returns the layer lines (" ---> <id>") of a build's log,
// each as layerRe's submatches.
func committedLayers(logs string) [][]string {
	var ids [][]string
	for _, line := range strings.Split(logs, "\n") {
		if m := layerRe.FindStringSubmatch(line); m != nil {
			ids = append(ids, m)
		}
	}
	return ids
}

// assertLayersRemoved checks that the intermediate images a build's
// output names are gone (a late-committed child would keep them alive).
func assertLayersRemoved(t *testing.T, e *env, logs string) {
	t.Helper()
	ids := committedLayers(logs)
	if len(ids) == 0 {
		t.Fatalf("no intermediate images in the build output:\n%s", logs)
	}
	for _, m := range ids {
		if _, err := e.exec.docker.ImageInspect(context.Background(), m[1]); !client.IsErrNotFound(err) {
			t.Errorf("intermediate image %s still there after the job (ImageInspect = %v)", m[1], err)
		}
	}
}

func TestBranchTagAndMissingBranch(t *testing.T) {
	e := newEnv(t, nil)
	e.git.addRepo(t, "acme/tagged", repoFiles{
		files: map[string]string{"Dockerfile": "FROM scratch\nCOPY Dockerfile /\n"},
		tag:   "v1.0",
	})
	tests := []struct {
		name, branch, wantErr string
	}{
		{name: "default branch", branch: ""},
		{name: "tag", branch: "v1.0"},
		{name: "missing branch", branch: "nope", wantErr: `clone: branch "nope" not found in acme/tagged`},
		{name: "missing repo", branch: "main", wantErr: "clone: repository acme/absent not found (or the token cannot read it)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := request("job-branch", "acme/tagged")
			req.Branch, req.ImageName = tc.branch, "tagged:v1"
			if tc.name == "missing repo" {
				req.RepoUrl = "acme/absent"
			}
			resp := e.exec.Run(context.Background(), req, newLogSink(""))
			if resp.GetError() != tc.wantErr || resp.GetSuccess() != (tc.wantErr == "") {
				t.Errorf("Run() = success %v error %q, want error %q\n%s", resp.GetSuccess(), resp.GetError(), tc.wantErr, resp.GetLogs())
			}
			if left := e.workspaceLeft(t); len(left) > 0 {
				t.Errorf("workspace left behind: %v", left)
			}
		})
	}
}

// Concurrent jobs pushing the same name each push their own image.
func TestConcurrentJobsSameImageName(t *testing.T) {
	e := newEnv(t, nil)
	const n = 3
	for i := range n {
		e.git.addRepo(t, fmt.Sprintf("acme/c%d", i), repoFiles{files: map[string]string{
			"Dockerfile": "FROM scratch\nCOPY id.txt /\n",
			"id.txt":     fmt.Sprintf("job %d\n", i),
		}})
	}
	resps := make(chan *blacktreev1.JobResponse, n)
	for i := range n {
		go func() {
			req := request(fmt.Sprintf("job-c%d", i), fmt.Sprintf("acme/c%d", i))
			req.ImageName = "shared:latest"
			resps <- e.exec.Run(context.Background(), req, newLogSink(""))
		}()
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	digests := map[string]bool{}
	for range n {
		resp := <-resps
		if !resp.GetSuccess() {
			t.Fatalf("Run(%s) failed: %s\n%s", resp.GetJobId(), resp.GetError(), resp.GetLogs())
		}
		digests[resp.GetImageDigest()] = true
		ref, err := name.ParseReference(resp.GetImageUrl()+"@"+resp.GetImageDigest(), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := remote.Get(ref, remote.WithTransport(tr), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			t.Errorf("remote.Get(%s) = %v", ref, err)
		}
	}
	if len(digests) != n {
		t.Errorf("distinct digests = %d, want %d (each job pushes its own image): %v", len(digests), n, digests)
	}
}
