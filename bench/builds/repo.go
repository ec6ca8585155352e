package builds

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// repo is a repository on the benchmark's git server and the working
// clone its changes are committed in.
type repo struct {
	name    string // owner/name, the JobRequest's repoUrl
	work    string
	version int
}

// dockerfile is the benchmark's Dockerfile: a dependency layer that takes
// sleep (its content made unique by nonce, so that no cache anywhere
// holds it), then the one file that changes, COPY'd last.
func dockerfile(base, nonce string, sleep time.Duration) string {
	return fmt.Sprintf("FROM %s\nRUN sleep %g && echo deps-%s > /deps\nCOPY app.txt /app.txt\n", base, sleep.Seconds(), nonce)
}

// newRepo creates the repository name with the benchmark's Dockerfile and
// a first app.txt.
func (s *services) newRepo(name, nonce string) (*repo, error) {
	files := map[string]string{
		"Dockerfile": dockerfile(s.cfg.BaseImage, nonce, s.cfg.DepsSleep),
		"app.txt":    "version 0\n",
	}
	if err := s.git.CreateRepo(name, "main", files); err != nil {
		return nil, err
	}
	r := &repo{name: name, work: filepath.Join(s.cfg.Dir, "work", name)}
	if err := os.MkdirAll(filepath.Dir(r.work), 0o755); err != nil {
		return nil, err
	}
	if err := gitRun("", "clone", "-q", filepath.Join(s.git.Root, name+".git"), r.work); err != nil {
		return nil, err
	}
	return r, nil
}

// change commits and pushes a new app.txt: the one-file source change.
func (r *repo) change() error {
	r.version++
	if err := os.WriteFile(filepath.Join(r.work, "app.txt"), fmt.Appendf(nil, "version %d\n", r.version), 0o644); err != nil {
		return err
	}
	if err := gitRun(r.work, "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-q", "-am", fmt.Sprintf("version %d", r.version)); err != nil {
		return err
	}
	return gitRun(r.work, "push", "-q", "origin", "main")
}

func gitRun(dir string, args ...string) error {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %w: %s", args[0], err, out)
	}
	return nil
}
