package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blacktree/blacktree/internal/cluster"
)

// imageUID is the unprivileged user the images run as (deploy/docker).
const imageUID = 10001

// TestContainerImagesDemo: the demo's job with the hub and the worker
// running from the images that scripts/build-images (make images) builds
// from this tree. The containers share the host's network to reach the
// loopback RabbitMQ, git server and registry; the worker gets the engine's
// socket and the socket's group. The job must succeed and its image must
// be in the registry.
//
// The containers run restricted as deploy/kubernetes restricts them, and
// under the system-call filter of their deploy/systemd unit, with any
// other call killing the process: the units' hardening is exercised on the
// binaries, not only checked by systemd-analyze verify.
func TestContainerImagesDemo(t *testing.T) {
	if out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput(); err != nil {
		t.Fatalf("docker version = %v: %s; this test needs the Docker engine (scripts/ensure-dockerd)", err, out)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatalf("Abs() = %v", err)
	}
	tag := "e2e-" + randomHex(4)
	hubImage, workerImage := "blacktree/hub:"+tag, "blacktree/worker:"+tag
	buildStart := time.Now()
	build := exec.Command("bash", "scripts/build-images")
	build.Dir = root
	build.Env = append(os.Environ(), "IMAGE_PREFIX=blacktree", "IMAGE_TAG="+tag)
	out, err := build.CombinedOutput()
	t.Cleanup(func() {
		_ = exec.Command("docker", "image", "rm", "-f", hubImage, workerImage, "blacktree/btctl:"+tag).Run()
	})
	if err != nil {
		t.Fatalf("scripts/build-images = %v\n%s", err, out)
	}
	buildTime := time.Since(buildStart)
	sizes := imageSizes(t, hubImage, workerImage, "blacktree/btctl:"+tag)
	// Registered before newEnv's cleanup, so it runs after it: the
	// containers are stopped gracefully first, then removed if left over.
	hubName, workerName := "bt-e2e-hub-"+tag, "bt-e2e-worker-"+tag
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", hubName, workerName).Run() })
	for _, ref := range []string{hubImage, workerImage} {
		user := dockerOutput(t, "image", "inspect", "--format", "{{.Config.User}}", ref)
		if user != "10001:10001" {
			t.Errorf("%s runs as %q, want the unprivileged 10001:10001", ref, user)
		}
	}

	githubToken := "ghp_E2ECONTAINER" + randomHex(12)
	git, reg := startExampleServices(t, githubToken)

	e := newEnv(t, sharedAMQP)
	for _, f := range []string{e.tokensFile, e.tokenFile, e.adminFile} {
		shareWithImageUser(t, f)
	}
	grpcAddr, err := cluster.FreeAddr()
	if err != nil {
		t.Fatalf("FreeAddr() = %v", err)
	}
	httpAddr, err := cluster.FreeAddr()
	if err != nil {
		t.Fatalf("FreeAddr() = %v", err)
	}
	hub := e.startContainer(hubName, []string{
		"--security-opt", "seccomp=" + unitSeccompProfile(t, filepath.Join(root, "deploy", "systemd", "blacktree-hub.service")),
		"-v", e.tokensFile + ":/etc/blacktree/worker-tokens:ro",
		"-v", e.adminFile + ":/etc/blacktree/admin-token:ro",
		hubImage,
		"--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--amqp-url", e.amqpURL,
		"--execute-queue", e.execQ, "--status-queue", e.statusQ,
		"--worker-tokens", "/etc/blacktree/worker-tokens", "--admin-token-file", "/etc/blacktree/admin-token",
	})
	h := &hubProc{Process: hub, GRPCAddr: grpcAddr, HTTPAddr: httpAddr}
	e.waitReady(h)
	cp, err := cluster.NewControlPlane(e.amqpURL, e.execQ, e.statusQ)
	if err != nil {
		t.Fatalf("NewControlPlane() = %v", err)
	}
	e.cp = cp

	socket := dockerSocket()
	var st syscall.Stat_t
	if err := syscall.Stat(socket, &st); err != nil {
		t.Fatalf("stat %s = %v", socket, err)
	}
	worker := e.startContainer(workerName, []string{
		"--security-opt", "seccomp=" + unitSeccompProfile(t, filepath.Join(root, "deploy", "systemd", "blacktree-worker@.service")),
		"--group-add", strconv.Itoa(int(st.Gid)),
		"-v", socket + ":/var/run/docker.sock",
		"-v", e.tokenFile + ":/etc/blacktree/worker-token:ro",
		// Writable directories of a read-only root, as in
		// deploy/kubernetes/worker.yaml.
		"--tmpfs", "/var/lib/blacktree-worker:uid=10001,gid=10001,mode=0700",
		"--tmpfs", "/work:uid=10001,gid=10001,mode=0700",
		workerImage, "--work-dir", "/work",
		"--hub", grpcAddr, "--insecure", "--token-file", "/etc/blacktree/worker-token",
		"--name", "container-worker", "--executor", "docker",
		"--git-base-url", git.URL, "--registry", reg.Host,
	})
	e.waitWorkers(h, 1, 60*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	req := job("container-demo")
	req.GithubToken = githubToken
	start := time.Now()
	if err := e.cp.Publish(ctx, req); err != nil {
		t.Fatalf("Publish() = %v", err)
	}
	got, err := e.cp.WaitFor(ctx, req.JobId)
	if err != nil {
		t.Fatalf("WaitFor() = %v%s", err, e.diagnose(h))
	}
	r := got[req.JobId]
	if !r.GetSuccess() || !strings.HasPrefix(r.GetImageUrl(), reg.Host+"/myapp") {
		t.Errorf("status = %v, want success with imageUrl under %s", r, reg.Host)
	}
	if code := manifestStatus(ctx, t, reg.ManifestURL("myapp", "latest")); code != http.StatusOK {
		t.Errorf("HEAD %s = HTTP %d, want 200: the pushed image is not in the registry", reg.ManifestURL("myapp", "latest"), code)
	}
	if strings.Contains(hub.Output()+worker.Output(), githubToken) {
		t.Errorf("the GitHub token appears in the containers' output")
	}
	record(t, "build+push from containers in %s; images built in %s: %s",
		time.Since(start).Round(time.Millisecond), buildTime.Round(time.Second), sizes)
}

// startContainer runs an image in the foreground with docker run on the
// host's network, restricted as the Kubernetes manifests restrict it, as a
// process of e: stopping it (SIGTERM to docker run,
// which passes it on) drains the binary like any other process of the
// suite. The caller removes a container left over.
func (e *env) startContainer(name string, args []string) *cluster.Process {
	e.t.Helper()
	// The restrictions of deploy/kubernetes's security contexts: no
	// capabilities, no privilege escalation, a read-only root.
	runArgs := append([]string{
		"run", "--rm", "--name", name, "--network", "host",
		"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
	}, args...)
	p, err := cluster.Start("container "+name, "docker", runArgs, nil, nil)
	if err != nil {
		e.t.Fatalf("docker run %s: %v", name, err)
	}
	e.procs = append(e.procs, p)
	return p
}

// unitSeccompProfile writes a Docker seccomp profile that allows exactly
// the system calls a systemd unit's SystemCallFilter= lines allow (groups
// expanded by systemd-analyze syscall-filter) and kills the process on
// any other, and returns its path. The container must also run with
// no-new-privileges (startContainer does): only then does runc install the
// filter right before it executes the binary, after its own privileged
// set-up calls.
func unitSeccompProfile(t *testing.T, unitPath string) string {
	t.Helper()
	b, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatalf("read unit: %v", err)
	}
	allow, deny := map[string]bool{}, map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(strings.TrimSpace(line), "SystemCallFilter=")
		if !ok {
			continue
		}
		into := allow
		if v, ok = strings.CutPrefix(v, "~"); ok {
			into = deny
		}
		for _, entry := range strings.Fields(v) {
			for _, name := range expandSyscalls(t, entry) {
				into[name] = true
			}
		}
	}
	if len(allow) == 0 {
		t.Fatalf("%s has no SystemCallFilter= allow list", unitPath)
	}
	var names []string
	for name := range allow {
		if !deny[name] {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	profile, err := json.Marshal(map[string]any{
		"defaultAction": "SCMP_ACT_KILL_PROCESS",
		"syscalls":      []map[string]any{{"names": names, "action": "SCMP_ACT_ALLOW"}},
	})
	if err != nil {
		t.Fatalf("marshal seccomp profile: %v", err)
	}
	path := filepath.Join(t.TempDir(), filepath.Base(unitPath)+".seccomp.json")
	if err := os.WriteFile(path, profile, 0o644); err != nil {
		t.Fatalf("write seccomp profile: %v", err)
	}
	return path
}

// expandSyscalls resolves a SystemCallFilter= entry: a system call, or a
// @group that systemd-analyze syscall-filter lists (recursively).
func expandSyscalls(t *testing.T, entry string) []string {
	t.Helper()
	if !strings.HasPrefix(entry, "@") {
		return []string{entry}
	}
	out, err := exec.Command("systemd-analyze", "syscall-filter", entry).Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter %s = %v (scripts/ensure-tools installs systemd)", entry, err)
	}
	lines := strings.Split(string(out), "\n")
	var names []string
	for _, line := range lines[1:] { // the first line is the group's name
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		names = append(names, expandSyscalls(t, line)...)
	}
	if len(names) == 0 {
		t.Fatalf("systemd-analyze syscall-filter %s listed nothing:\n%s", entry, out)
	}
	return names
}

// shareWithImageUser lets the images' user read a file mounted into a
// container: it becomes that user's (when the suite runs as root) or
// readable by all (otherwise; the hub then warns about it).
func shareWithImageUser(t *testing.T, path string) {
	t.Helper()
	var err error
	if os.Geteuid() == 0 {
		err = os.Chown(path, imageUID, imageUID)
	} else {
		err = os.Chmod(path, 0o644)
	}
	if err != nil {
		t.Fatalf("share %s with uid %d: %v", path, imageUID, err)
	}
}

// dockerSocket is the engine's socket: DOCKER_HOST's when it names a unix
// socket, else the default.
func dockerSocket() string {
	if p, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok {
		return p
	}
	return "/var/run/docker.sock"
}

func dockerOutput(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).Output()
	if err != nil {
		t.Fatalf("docker %s = %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

// imageSizes is "ref=size" for each ref, as docker image ls shows them.
func imageSizes(t *testing.T, refs ...string) string {
	t.Helper()
	var parts []string
	for _, ref := range refs {
		size := dockerOutput(t, "image", "ls", "--format", "{{.Size}}", ref)
		parts = append(parts, strings.TrimPrefix(ref, "blacktree/")+"="+size)
	}
	return strings.Join(parts, " ")
}

// manifestStatus is the HTTP status of a HEAD on a registry manifest.
func manifestStatus(ctx context.Context, t *testing.T, url string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, url, nil)
	if err != nil {
		t.Fatalf("NewRequest() = %v", err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json")
	tr := &http.Transport{DisableKeepAlives: true} // nothing lingers for goleak
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("HEAD %s = %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
