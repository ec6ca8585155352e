package jobspec

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// CacheKey names what a build can reuse from an earlier one: the same
// repository built from the same context and Dockerfile. Workers report the
// keys of their recent builds (CacheSummary.build_keys) and the hub prefers
// a free worker that reports a job's key. The branch is left out on
// purpose: branches of one repository share most layers.
//
// The key is 32 hex characters; it says nothing about the repository to
// anyone who does not already know its URL.
func CacheKey(req *blacktreev1.JobRequest) string {
	repo := strings.TrimSuffix(strings.TrimRight(req.GetRepoUrl(), "/"), ".git")
	sum := sha256.Sum256([]byte(repo + "\x00" + req.GetContextDir() + "\x00" + req.GetDockerfilePath()))
	return hex.EncodeToString(sum[:16])
}
