package jobspec

import (
	"testing"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

func TestCacheKey(t *testing.T) {
	base := &blacktreev1.JobRequest{
		RepoUrl:        "https://git.example.com/team/app",
		Branch:         "main",
		ContextDir:     ".",
		DockerfilePath: "Dockerfile",
	}
	key := CacheKey(base)
	if len(key) != 32 {
		t.Fatalf("CacheKey length %d, want 32", len(key))
	}
	same := []*blacktreev1.JobRequest{
		{RepoUrl: "https://git.example.com/team/app.git", Branch: "main", ContextDir: ".", DockerfilePath: "Dockerfile"},
		{RepoUrl: "https://git.example.com/team/app/", Branch: "feature", ContextDir: ".", DockerfilePath: "Dockerfile"},
	}
	for _, req := range same {
		if got := CacheKey(req); got != key {
			t.Errorf("CacheKey(%q, %q) = %s, want %s", req.RepoUrl, req.Branch, got, key)
		}
	}
	different := []*blacktreev1.JobRequest{
		{RepoUrl: "https://git.example.com/team/other", ContextDir: ".", DockerfilePath: "Dockerfile"},
		{RepoUrl: "https://git.example.com/team/app", ContextDir: "web", DockerfilePath: "Dockerfile"},
		{RepoUrl: "https://git.example.com/team/app", ContextDir: ".", DockerfilePath: "Dockerfile.prod"},
	}
	for _, req := range different {
		if got := CacheKey(req); got == key {
			t.Errorf("CacheKey(%q, %q, %q) equals the base key", req.RepoUrl, req.ContextDir, req.DockerfilePath)
		}
	}
}
