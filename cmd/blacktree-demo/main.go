// Command blacktree-demo runs Blacktree's main job end to end on one
// machine: it serves the bundled example repository (examples/hello) from a
// loopback git server that demands a token, starts an OCI registry, a hub
// and a worker (the real binaries, built here), publishes the example
// JobRequest to RabbitMQ and prints the JobResponse from the status queue. Then it stops everything it started. `make demo` runs it after
// making sure RabbitMQ and a Docker engine are up.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/cliflags"
	"github.com/blacktree/blacktree/internal/cluster"
	"github.com/blacktree/blacktree/internal/devenv"
	"github.com/blacktree/blacktree/internal/jobspec"
)

const steps = 7

func main() {
	amqpURL := flag.String("amqp-url", cliflags.EnvOr(os.Getenv, "BLACKTREE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), "RabbitMQ URL (env BLACKTREE_AMQP_URL)")
	timeout := flag.Duration("timeout", 3*time.Minute, "give up after this long")
	verbose := flag.Bool("v", false, "print the hub's and worker's logs as they run")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), `Usage: blacktree-demo [flags]

Runs one build job through Blacktree end to end on this machine and prints
the JobResponse. Needs RabbitMQ on --amqp-url and a Docker engine
(make demo starts both when missing).

Flags:
`)
		cliflags.PrintFlags(flag.CommandLine.Output(), flag.CommandLine, nil)
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := run(ctx, *amqpURL, *verbose); err != nil {
		fmt.Fprintf(os.Stderr, "demo failed: %v\n", err)
		os.Exit(1)
	}
}

func step(n int, format string, args ...any) {
	fmt.Printf("[%d/%d] %s\n", n, steps, fmt.Sprintf(format, args...))
}

func secret() string {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func run(ctx context.Context, amqpURL string, verbose bool) (err error) {
	root, err := cluster.ModuleRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "blacktree-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	step(1, "building blacktree-hub and blacktree-worker")
	bins, err := cluster.Build(ctx, root, filepath.Join(work, "bin"), false)
	if err != nil {
		return err
	}

	step(2, "serving examples/hello as user/reponame on a local git server (token required)")
	githubToken := "ghp_demo" + secret()
	git, err := devenv.StartGitServer(filepath.Join(work, "git"), githubToken)
	if err != nil {
		return err
	}
	defer git.Close()
	files, err := readDir(filepath.Join(root, "examples", "hello"))
	if err != nil {
		return err
	}
	if err := git.CreateRepo("user/reponame", "main", files); err != nil {
		return err
	}

	step(3, "starting a local OCI registry")
	reg, err := devenv.StartRegistry()
	if err != nil {
		return err
	}
	defer reg.Close()
	fmt.Printf("      registry at %s\n", reg.Host)

	suffix := secret()[:8]
	execQ, statusQ := "demo.execute."+suffix, "demo.status."+suffix
	step(4, "starting the hub (queues %s, %s)", execQ, statusQ)
	workerToken := secret()
	tokens := filepath.Join(work, "worker-tokens")
	if err := os.WriteFile(tokens, []byte("demo-worker:"+workerToken+"\n"), 0o600); err != nil {
		return err
	}
	grpcAddr, err := cluster.FreeAddr()
	if err != nil {
		return err
	}
	httpAddr, err := cluster.FreeAddr()
	if err != nil {
		return err
	}
	var tee io.Writer
	if verbose {
		tee = os.Stdout
	}
	hub, err := cluster.Start("hub", bins.Hub, []string{
		"--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--amqp-url", amqpURL,
		"--execute-queue", execQ, "--status-queue", statusQ, "--worker-tokens", tokens,
	}, nil, tee)
	if err != nil {
		return err
	}
	defer stopProcess(hub)
	if err := cluster.WaitHTTP200(ctx, "http://"+httpAddr+"/readyz", hub); err != nil {
		return err
	}
	cp, err := cluster.NewControlPlane(amqpURL, execQ, statusQ)
	if err != nil {
		return err
	}
	var worker *cluster.Process
	defer func() {
		// Stop the processes before their queues go away.
		if worker != nil {
			stopProcess(worker)
		}
		stopProcess(hub)
		_ = cp.DeleteQueues(execQ, statusQ, execQ+".dead")
		cp.Close()
	}()

	step(5, "starting a worker (docker executor, pushing to %s)", reg.Host)
	tokenFile := filepath.Join(work, "worker-token")
	if err := os.WriteFile(tokenFile, []byte(workerToken+"\n"), 0o600); err != nil {
		return err
	}
	worker, err = cluster.Start("worker", bins.Worker, []string{
		"--hub", grpcAddr, "--insecure", "--token-file", tokenFile, "--name", "demo-worker",
		"--executor", "docker", "--git-base-url", git.URL, "--registry", reg.Host,
		"--state-dir", filepath.Join(work, "worker-state"),
	}, nil, tee)
	if err != nil {
		return err
	}

	step(6, "publishing the example JobRequest to %s", execQ)
	req := &blacktreev1.JobRequest{
		JobId:          "unique-id-123",
		RepoUrl:        "user/reponame",
		Branch:         "main",
		DockerfilePath: "Dockerfile",
		ContextDir:     ".",
		ImageName:      "myapp:latest",
		GithubToken:    githubToken,
	}
	body, err := jobspec.EncodeRequest(req)
	if err != nil {
		return err
	}
	fmt.Printf("      %s\n", strings.ReplaceAll(string(body), githubToken, "<token>"))
	if err := cp.Publish(ctx, req); err != nil {
		return err
	}
	start := time.Now()
	got, err := waitWithProgress(ctx, cp, req.GetJobId(), start)
	if err != nil {
		return fmt.Errorf("%w\n--- hub output ---\n%s\n--- worker output ---\n%s", err, hub.Output(), worker.Output())
	}
	out, err := jobspec.EncodeResponse(got)
	if err != nil {
		return err
	}

	step(7, "JobResponse from %s after %s:", statusQ, time.Since(start).Round(time.Millisecond))
	var pretty bytes.Buffer
	if json.Indent(&pretty, out, "", "  ") == nil {
		out = pretty.Bytes()
	}
	fmt.Println(string(out))
	if strings.Contains(string(out)+hub.Output()+worker.Output(), githubToken) {
		return errors.New("the GitHub token leaked into the output")
	}
	if !got.GetSuccess() {
		return fmt.Errorf("the job failed: %s", got.GetError())
	}
	if err := checkManifest(ctx, reg, "myapp", "latest"); err != nil {
		return err
	}
	fmt.Printf("demo ok: %s is in the registry (digest %s); the token appeared in no output\n", got.GetImageUrl(), got.GetImageDigest())
	return nil
}

func readDir(dir string) (map[string]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read example repository: %w", err)
	}
	files := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		files[e.Name()] = string(b)
	}
	return files, nil
}

func waitWithProgress(ctx context.Context, cp *cluster.ControlPlane, id string, start time.Time) (*blacktreev1.JobResponse, error) {
	type result struct {
		resp *blacktreev1.JobResponse
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		got, err := cp.WaitFor(ctx, id)
		ch <- result{got[id], err}
	}()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case r := <-ch:
			return r.resp, r.err
		case <-tick.C:
			fmt.Printf("      waiting for the JobResponse (%s so far: clone, build, push)\n", time.Since(start).Round(time.Second))
		}
	}
}

func checkManifest(ctx context.Context, reg *devenv.Registry, repo, tag string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, reg.ManifestURL(repo, tag), nil)
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("check the registry: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the registry has no %s:%s (HTTP %d)", repo, tag, resp.StatusCode)
	}
	return nil
}

func stopProcess(p *cluster.Process) {
	if err := p.Stop(30 * time.Second); err != nil {
		fmt.Fprintf(os.Stderr, "      %s: %v\n", p.Name, err)
	}
}
