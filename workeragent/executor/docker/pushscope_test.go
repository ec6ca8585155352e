package docker

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/image"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// registryRepos lists the repositories the test registry holds.
func registryRepos(t *testing.T, host string) []string {
	t.Helper()
	reg, err := name.NewRegistry(host, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	repos, err := remote.Catalog(context.Background(), reg, remote.WithTransport(tr), remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		t.Fatalf("remote.Catalog(%s) = %v", host, err)
	}
	sort.Strings(repos)
	return repos
}

// TestPushOutsideScopeRefused: a job whose imageName points outside the
// worker's push prefixes (another repository path on the same registry,
// a sibling path sharing the prefix's letters, another registry) fails at
// validation, before the clone, and nothing reaches the registry; a name
// inside is pushed.
func TestPushOutsideScopeRefused(t *testing.T) {
	var prefix string
	e := newEnv(t, func(c *Config) {
		prefix = c.Registry // the test registry's host + "/blacktree"
		c.Registry = ""
		c.AllowedPushPrefixes = []string{prefix}
	})
	e.git.addRepo(t, "acme/app", repoFiles{files: map[string]string{
		"Dockerfile": "FROM scratch\nCOPY Dockerfile /\n",
	}})
	for _, image := range []string{
		e.regHost + "/other/app:v1",
		e.regHost + "/blacktree-b/app:v1",
		"ghcr.io/another-team/app:latest",
		"python:3.12",
	} {
		t.Run(image, func(t *testing.T) {
			req := request("job-scope", "acme/app")
			req.ImageName = image
			logs := newLogSink("")
			resp := e.exec.Run(context.Background(), req, logs)
			if resp.GetSuccess() || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_VALIDATE {
				t.Fatalf("Run() = success %v stage %v error %q, want failure at VALIDATE", resp.GetSuccess(), resp.GetFailedStage(), resp.GetError())
			}
			if msg := resp.GetError(); !strings.Contains(msg, image) || !strings.Contains(msg, prefix) || !strings.Contains(msg, "allowed push prefixes") {
				t.Errorf("Run().Error = %q, want it to name the image and the allowed prefix %s", msg, prefix)
			}
			if strings.Contains(logs.String(), "clone: fetching") {
				t.Errorf("the job cloned before it was refused:\n%s", logs.String())
			}
		})
	}
	if repos := registryRepos(t, e.regHost); len(repos) != 0 {
		t.Errorf("registry repositories after refused jobs = %v, want none", repos)
	}

	req := request("job-scope-ok", "acme/app")
	req.ImageName = prefix + "/app:v1"
	resp, _ := runOK(t, e, req)
	if resp.GetImageUrl() != prefix+"/app:v1" {
		t.Errorf("Run().ImageUrl = %q, want %s/app:v1", resp.GetImageUrl(), prefix)
	}
	if repos := registryRepos(t, e.regHost); len(repos) != 1 || repos[0] != "blacktree/app" {
		t.Errorf("registry repositories = %v, want [blacktree/app]", repos)
	}
}

func TestNewRefusesNoPushScope(t *testing.T) {
	_, err := New(Config{})
	if !errors.Is(err, ErrNoPushScope) {
		t.Fatalf("New(no registry, no prefixes) = %v, want ErrNoPushScope", err)
	}
	if strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "--allow-any-push") {
		t.Errorf("ErrNoPushScope text = %q, want one line naming --allow-any-push", err)
	}
	if _, err := New(Config{AllowedPushPrefixes: []string{"reg.example.com/Team"}}); err == nil || !strings.Contains(err.Error(), `push prefix "reg.example.com/Team"`) {
		t.Errorf("New(bad prefix) = %v, want a refusal naming it", err)
	}
	for _, cfg := range []Config{{AllowAnyPush: true}, {AllowedPushPrefixes: []string{"reg.example.com/team"}}} {
		e, err := New(cfg)
		if err != nil {
			t.Errorf("New(%+v) = %v, want an executor", cfg, err)
			continue
		}
		e.Close()
	}
}

// TestNoUserNamedTagOnEngine: while jobs build and push, the engine never
// holds an image under the job's imageName (nor its repository with
// another tag): only the worker-private job tag.
func TestNoUserNamedTagOnEngine(t *testing.T) {
	base := baseImage(t)
	for _, builder := range []string{BuilderBuildKit, BuilderClassic} {
		t.Run(builder, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.Builder = builder })
			e.git.addRepo(t, "acme/watched", repoFiles{files: map[string]string{
				"Dockerfile": "FROM " + base + "\nRUN sleep 1 && echo " + randomHex() + " > /n\nCOPY Dockerfile /\n",
			}})
			const repo = "watched-app"
			ctx, stop := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			var mu sync.Mutex
			seen := map[string]bool{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					images, err := e.exec.docker.ImageList(ctx, image.ListOptions{All: true})
					if err == nil {
						mu.Lock()
						for _, im := range images {
							for _, tag := range im.RepoTags {
								seen[tag] = true
							}
						}
						mu.Unlock()
					}
					select {
					case <-ctx.Done():
					case <-time.After(20 * time.Millisecond):
					}
				}
			}()
			req := request("job-watched", "acme/watched")
			req.ImageName = repo + ":v1"
			resp, _ := runOK(t, e, req)
			stop()
			wg.Wait()
			if !strings.Contains(resp.GetImageUrl(), "/blacktree/"+repo+":v1") {
				t.Errorf("Run().ImageUrl = %q", resp.GetImageUrl())
			}
			sawJobTag := false
			for tag := range seen {
				if strings.Contains(tag, repo) {
					t.Errorf("the engine held %s during the job, want no tag under the job's imageName", tag)
				}
				sawJobTag = sawJobTag || strings.HasPrefix(tag, jobRepo+":"+jobTagPrefix)
			}
			if !sawJobTag {
				t.Errorf("the poll never saw the job's private tag %s:%s…; tags seen: %v", jobRepo, jobTagPrefix, seen)
			}
		})
	}
}
