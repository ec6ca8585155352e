package builds

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// handCLI is the docker CLI the hand-run uses and whether it builds with
// BuildKit (DOCKER_BUILDKIT=1) or the classic builder.
type handCLI struct {
	path     string
	version  string
	buildkit bool
}

func (h handCLI) String() string {
	if h.buildkit {
		return fmt.Sprintf("BuildKit (DOCKER_BUILDKIT=1, docker CLI %s at %s)", h.version, h.path)
	}
	return fmt.Sprintf("classic (DOCKER_BUILDKIT=0, docker CLI %s at %s: no BuildKit build worked)", h.version, h.path)
}

func (h handCLI) env(host string) []string {
	flag := "DOCKER_BUILDKIT=0"
	if h.buildkit {
		flag = "DOCKER_BUILDKIT=1"
	}
	return append(engineEnv(host), flag)
}

// pickHandCLI finds the docker CLI a user would build with by hand: the
// first candidate that builds a RUN step with BuildKit against the engine
// (a CLI of 23 or later needs the buildx plugin for that; Debian's 20.10
// CLI has it built in), else the first candidate with the classic builder.
func (s *services) pickHandCLI(ctx context.Context) (handCLI, error) {
	var candidates []string
	if s.cfg.HandDocker != "" {
		candidates = []string{s.cfg.HandDocker}
	} else {
		if p, err := exec.LookPath("docker"); err == nil {
			candidates = append(candidates, p)
		}
		if _, err := os.Stat("/usr/bin/docker"); err == nil {
			candidates = append(candidates, "/usr/bin/docker")
		}
	}
	if len(candidates) == 0 {
		return handCLI{}, fmt.Errorf("no docker CLI found")
	}
	probe := filepath.Join(s.cfg.Dir, "probe")
	if err := os.MkdirAll(probe, 0o755); err != nil {
		return handCLI{}, err
	}
	df := fmt.Sprintf("FROM %s\nRUN echo probe-%s > /probe\n", s.cfg.BaseImage, randomHex(6))
	if err := os.WriteFile(filepath.Join(probe, "Dockerfile"), []byte(df), 0o644); err != nil {
		return handCLI{}, err
	}
	for _, c := range candidates {
		h := handCLI{path: c, version: cliVersion(ctx, c), buildkit: true}
		cmd := exec.CommandContext(ctx, c, "build", "--network", "none", "-q", "-t", "bench-probe:1", probe)
		cmd.Env = h.env("")
		if err := cmd.Run(); err == nil {
			_ = exec.CommandContext(ctx, c, "rmi", "bench-probe:1").Run()
			return h, nil
		}
	}
	return handCLI{path: candidates[0], version: cliVersion(ctx, candidates[0])}, nil
}

func cliVersion(ctx context.Context, cli string) string {
	out, err := exec.CommandContext(ctx, cli, "version", "--format", "{{.Client.Version}}").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// handRun builds r by hand against the engine at host ("" the machine's)
// and pushes it as image: `git clone --depth 1 && docker build && docker
// push`, timed from the clone's start to the push's end.
func (s *services) handRun(ctx context.Context, h handCLI, host string, r *repo, image string) (time.Duration, error) {
	src, err := os.MkdirTemp(s.cfg.Dir, "hand-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(src)
	u, err := url.Parse(s.git.URL + "/" + r.name + ".git")
	if err != nil {
		return 0, err
	}
	u.User = url.UserPassword("bench", s.gitToken)
	ref := s.reg.Host + "/" + image
	script := `git clone -q --depth 1 -b main "$1" "$2" && "$3" build --network none -t "$4" "$2" && "$3" push "$4"`
	cmd := exec.CommandContext(ctx, "sh", "-c", script, "hand-run", u.String(), filepath.Join(src, "src"), h.path, ref)
	cmd.Env = h.env(host)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("hand-run of %s: %w: %s", r.name, err, strings.ReplaceAll(out.String(), s.gitToken, "***"))
	}
	return took, nil
}

// removeImage removes a hand-run's image from the engine (outside the
// timed part, so that the engine's store does not grow over the run).
func (s *services) removeImage(ctx context.Context, h handCLI, host, image string) {
	cmd := exec.CommandContext(ctx, h.path, "rmi", s.reg.Host+"/"+image)
	cmd.Env = engineEnv(host)
	_ = cmd.Run()
}
