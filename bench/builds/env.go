package builds

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/blacktree/blacktree/internal/cluster"
	"github.com/blacktree/blacktree/internal/devenv"
)

// services are what both scenarios share: the built binaries, token
// files, a git server and a registry on loopback.
type services struct {
	cfg  Config
	bins cluster.Binaries
	git  *devenv.GitServer
	reg  *devenv.Registry

	gitToken                               string
	tokensFile, workerTokenFile, adminFile string
	hubHelp, workerHelp                    string
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startServices builds the binaries, writes the tokens and starts the git
// server and the registry. close stops what it started.
func startServices(ctx context.Context, cfg Config) (*services, error) {
	if err := devenv.CheckGit(); err != nil {
		return nil, err
	}
	s := &services{cfg: cfg, gitToken: "ghp_bench" + randomHex(12)}
	var err error
	cfg.Logf("building blacktree-hub and blacktree-worker")
	if s.bins, err = cluster.Build(ctx, cfg.Root, filepath.Join(cfg.Dir, "bin"), false); err != nil {
		return nil, err
	}
	s.hubHelp = helpText(s.bins.Hub)
	s.workerHelp = helpText(s.bins.Worker)
	workerToken, adminToken := "wt-"+randomHex(16), "at-"+randomHex(16)
	s.tokensFile = filepath.Join(cfg.Dir, "worker-tokens")
	s.workerTokenFile = filepath.Join(cfg.Dir, "worker-token")
	s.adminFile = filepath.Join(cfg.Dir, "admin-token")
	for path, content := range map[string]string{
		s.tokensFile:      "bench:" + workerToken + "\n",
		s.workerTokenFile: workerToken + "\n",
		s.adminFile:       adminToken + "\n",
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			return nil, err
		}
	}
	gitRoot := filepath.Join(cfg.Dir, "git")
	if err := os.MkdirAll(gitRoot, 0o755); err != nil {
		return nil, err
	}
	if s.git, err = devenv.StartGitServer(gitRoot, s.gitToken); err != nil {
		return nil, err
	}
	if s.reg, err = devenv.StartRegistry(); err != nil {
		s.git.Close()
		return nil, err
	}
	return s, nil
}

func (s *services) close() {
	s.reg.Close()
	s.git.Close()
}

// helpText is a binary's --help output.
func helpText(bin string) string {
	out, _ := exec.Command(bin, "--help").CombinedOutput()
	return string(out)
}

// hasFlag reports whether a --help text lists --name.
func hasFlag(help, name string) bool {
	return regexp.MustCompile(`(?m)^\s+--` + regexp.QuoteMeta(name) + `(\s|$)`).MatchString(help)
}

// workerBuilder says which builder the workers use, for the report.
func (s *services) workerBuilder() string {
	switch {
	case !hasFlag(s.workerHelp, "builder"):
		return "classic (the worker has no --builder)"
	case s.cfg.Builder != "":
		return s.cfg.Builder + " (--builder " + s.cfg.Builder + ")"
	default:
		return "the worker's default (no --builder given)"
	}
}

// ensureBase imports the benchmark's base image into the engine at host
// ("" is the machine's own) when it is missing. A worker that removes its
// job's base image would otherwise fail the next FROM; it is run before
// every build, outside the timed part.
func (s *services) ensureBase(ctx context.Context, host string) error {
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(s.cfg.Root, "scripts", "import-base-image"), s.cfg.BaseImage)
	cmd.Env = engineEnv(host)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("import %s into %s: %w: %s", s.cfg.BaseImage, engineName(host), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// engineEnv is the environment of a docker command against host.
func engineEnv(host string) []string {
	env := os.Environ()
	if host != "" {
		env = append(env, "DOCKER_HOST="+host)
	}
	return env
}

func engineName(host string) string {
	if host == "" {
		return "the main engine"
	}
	return host
}

// engineVersion is the engine's server version.
func engineVersion(ctx context.Context) string {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}} (API {{.Server.APIVersion}})")
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return "unknown: " + err.Error()
	}
	return strings.TrimSpace(out.String())
}
