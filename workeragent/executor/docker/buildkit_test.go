package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"google.golang.org/protobuf/encoding/protojson"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/redact"
)

// runOK runs req and fails the test unless the job succeeded.
func runOK(t *testing.T, e *env, req *blacktreev1.JobRequest) (*blacktreev1.JobResponse, string) {
	t.Helper()
	logs := newLogSink("")
	resp := e.exec.Run(context.Background(), req, logs)
	if !resp.GetSuccess() {
		t.Fatalf("Run(%s) failed: error=%q stage=%v logs:\n%s", req.GetJobId(), resp.GetError(), resp.GetFailedStage(), resp.GetLogs())
	}
	return resp, logs.String()
}

// TestBuildKitModernDockerfile builds, on the offline base image, a
// multi-stage Dockerfile with parallel stages, COPY --from, a cache mount
// and a secret mount, then reads the pushed image back: what the steps
// wrote is there, the token is nowhere in it (layers, config, manifest),
// and the logs show BuildKit's plain progress with the token scrubbed.
func TestBuildKitModernDockerfile(t *testing.T) {
	base := baseImage(t)
	e := newEnv(t, nil)
	nonce := randomHex() // a cold first build, whatever ran on this engine before
	sum := sha256.Sum256([]byte(goodToken))
	e.git.addRepo(t, "acme/modern", repoFiles{files: map[string]string{
		"Dockerfile": `FROM ` + base + ` AS deps
RUN echo deps-` + nonce + ` > /deps.txt && sleep 1
FROM ` + base + ` AS tools
RUN echo tools-` + nonce + ` > /tools.txt && sleep 1
FROM ` + base + `
COPY --from=deps /deps.txt /out/
COPY --from=tools /tools.txt /out/
RUN --mount=type=cache,id=bt-` + nonce + `,target=/cache echo run >> /cache/runs && wc -l < /cache/runs > /out/cache-runs
RUN --mount=type=secret,id=GIT_AUTH_TOKEN sha256sum /run/secrets/GIT_AUTH_TOKEN | cut -c1-64 > /out/secret.sha
RUN --mount=type=secret,id=GIT_AUTH_TOKEN echo "printed: $(cat /run/secrets/GIT_AUTH_TOKEN)"
COPY app.txt /out/
`,
		"app.txt": "app\n",
	}})
	req := request("job-modern", "acme/modern")
	req.ImageName = "modern:v1"
	resp, streamed := runOK(t, e, req)

	for _, want := range []string{"[deps 2/2] RUN echo deps-", "[tools 2/2] RUN echo tools-", "COPY --from=deps", "DONE"} {
		if !strings.Contains(resp.GetLogs(), want) {
			t.Errorf("Run().Logs lacks %q (BuildKit plain progress):\n%s", want, resp.GetLogs())
		}
	}
	js, _ := protojson.Marshal(resp)
	for what, s := range map[string]string{"streamed logs": streamed, "response": string(js)} {
		if strings.Contains(s, goodToken) {
			t.Errorf("token appears in the %s", what)
		}
		if !strings.Contains(s, "printed: "+redact.Placeholder) {
			t.Errorf("%s lacks the scrubbed output of the step that printed the token:\n%s", what, s)
		}
	}
	if resp.GetTotalSteps() != 8 {
		t.Errorf("Run().TotalSteps = %d, want 8 (every step but the FROMs)", resp.GetTotalSteps())
	}

	files := imageFileContents(t, resp.GetImageUrl())
	for name, want := range map[string]string{
		"out/deps.txt":   "deps-" + nonce + "\n",
		"out/tools.txt":  "tools-" + nonce + "\n",
		"out/cache-runs": "1\n",
		"out/secret.sha": hex.EncodeToString(sum[:]) + "\n",
		"out/app.txt":    "app\n",
	} {
		if got, ok := files[name]; !ok || string(got) != want {
			t.Errorf("image file %s = %q (present %v), want %q", name, got, ok, want)
		}
	}
	assertTokenNotInImage(t, resp.GetImageUrl())
	assertImagePresent(t, e, base)
	assertNoLocalImage(t, e, resp.GetImageUrl())
	if left := e.workspaceLeft(t); len(left) > 0 {
		t.Errorf("workspace left behind: %v", left)
	}
}

// TestBuildKitRebuildReusesCache changes the source a Dockerfile copies
// last: the rebuild answers the dependency steps from the cache (and the
// cache mount kept what the first build wrote), and the base image and the
// cache survive the jobs.
func TestBuildKitRebuildReusesCache(t *testing.T) {
	base := baseImage(t)
	e := newEnv(t, nil)
	nonce := randomHex()
	dockerfile := `FROM ` + base + `
COPY deps.txt /deps.txt
RUN --mount=type=cache,id=bt-` + nonce + `,target=/cache cat /deps.txt >> /cache/log && wc -l < /cache/log > /deps-built
COPY app.txt /app.txt
RUN cat /app.txt > /app-built
`
	deps := "deps " + nonce + "\n"
	for i, rf := range []map[string]string{
		{"Dockerfile": dockerfile, "deps.txt": deps, "app.txt": "v1\n"},
		{"Dockerfile": dockerfile, "deps.txt": deps, "app.txt": "v2\n"},
		{"Dockerfile": dockerfile, "deps.txt": "deps " + nonce + " v2\n", "app.txt": "v2\n"},
	} {
		e.git.addRepo(t, fmt.Sprintf("acme/rebuild%d", i), repoFiles{files: rf})
	}
	run := func(i int) (*blacktreev1.JobResponse, map[string][]byte) {
		req := request(fmt.Sprintf("job-rebuild%d", i), fmt.Sprintf("acme/rebuild%d", i))
		req.ImageName = "rebuild:v1"
		resp, _ := runOK(t, e, req)
		return resp, imageFileContents(t, resp.GetImageUrl())
	}

	cold, _ := run(0)
	if cold.GetTotalSteps() != 4 || cold.GetCachedSteps() != 0 {
		t.Errorf("cold build: cached/total steps = %d/%d, want 0/4\n%s", cold.GetCachedSteps(), cold.GetTotalSteps(), cold.GetLogs())
	}
	assertImagePresent(t, e, base)

	warm, files := run(1)
	if warm.GetTotalSteps() != 4 || warm.GetCachedSteps() != 2 {
		t.Errorf("rebuild after an app change: cached/total steps = %d/%d, want 2/4\n%s", warm.GetCachedSteps(), warm.GetTotalSteps(), warm.GetLogs())
	}
	if !strings.Contains(warm.GetLogs(), "CACHED") {
		t.Errorf("rebuild logs lack CACHED markers:\n%s", warm.GetLogs())
	}
	if got := string(files["app-built"]); got != "v2\n" {
		t.Errorf("rebuilt image app-built = %q, want v2", got)
	}
	if got := string(files["deps-built"]); got != "1\n" {
		t.Errorf("rebuilt image deps-built = %q, want the first build's 1", got)
	}

	// A dependency change runs the step again, and its cache mount still
	// holds what the first build appended.
	deps2, files := run(2)
	if deps2.GetCachedSteps() != 0 {
		t.Errorf("rebuild after a deps change: cached steps = %d, want 0", deps2.GetCachedSteps())
	}
	if got := string(files["deps-built"]); got != "2\n" {
		t.Errorf("deps-built = %q, want 2 (the cache mount kept the first run's line)", got)
	}
	assertImagePresent(t, e, base)
}

// TestBuildKitFailingStep: the status names the failing step and the logs
// keep its output; nothing of the job stays in the engine.
func TestBuildKitFailingStep(t *testing.T) {
	base := baseImage(t)
	e := newEnv(t, nil)
	e.git.addRepo(t, "acme/failing", repoFiles{files: map[string]string{
		"Dockerfile": "FROM " + base + "\nRUN echo output-before-failure && exit 3\n",
	}})
	req := request("job-failing", "acme/failing")
	req.ImageName = "failing:v1"
	resp := e.exec.Run(context.Background(), req, newLogSink(""))
	if resp.GetSuccess() || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_BUILD {
		t.Fatalf("Run() = success %v stage %v error %q, want failure at BUILD", resp.GetSuccess(), resp.GetFailedStage(), resp.GetError())
	}
	if want := "build: Dockerfile line 2 (RUN echo output-before-failure && exit 3): "; !strings.HasPrefix(resp.GetError(), want) {
		t.Errorf("Run().Error = %q, want it to start with %q", resp.GetError(), want)
	}
	if !strings.Contains(resp.GetError(), "exit code: 3") {
		t.Errorf("Run().Error = %q, want the exit code", resp.GetError())
	}
	if !strings.Contains(resp.GetLogs(), "output-before-failure\n") {
		t.Errorf("Run().Logs lacks the failing step's output:\n%s", resp.GetLogs())
	}
	assertNoLocalImage(t, e, e.regHost+"/blacktree/failing:v1")
	assertImagePresent(t, e, base)
}

// TestBuildKitUnpullableSyntaxFrontend: a `# syntax=` line naming a
// frontend image that cannot be pulled fails with an error naming it.
func TestBuildKitUnpullableSyntaxFrontend(t *testing.T) {
	e := newEnv(t, nil)
	const frontend = "registry.invalid/blacktree/no-such-frontend:1"
	e.git.addRepo(t, "acme/syntax", repoFiles{files: map[string]string{
		"Dockerfile": "# syntax=" + frontend + "\nFROM scratch\nCOPY Dockerfile /\n",
	}})
	resp := e.exec.Run(context.Background(), request("job-syntax", "acme/syntax"), newLogSink(""))
	if resp.GetSuccess() || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_BUILD {
		t.Fatalf("Run() = success %v stage %v error %q, want failure at BUILD", resp.GetSuccess(), resp.GetFailedStage(), resp.GetError())
	}
	want := fmt.Sprintf("build: %s: %q", ErrFrontendUnavailable, frontend)
	if !strings.HasPrefix(resp.GetError(), want) {
		t.Errorf("Run().Error = %q, want it to start with %q", resp.GetError(), want)
	}
}

// TestBuildKitCancelStopsPromptly: cancelling a job mid-step ends it at
// once, and nothing of it stays in the engine.
func TestBuildKitCancelStopsPromptly(t *testing.T) {
	base := baseImage(t)
	e := newEnv(t, nil)
	e.git.addRepo(t, "acme/sleepy", repoFiles{files: map[string]string{
		"Dockerfile": "FROM " + base + "\nRUN echo started-" + randomHex() + " && sleep 120\n",
	}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := newLogSink("started-")
	done := make(chan *blacktreev1.JobResponse, 1)
	go func() { done <- e.exec.Run(ctx, request("job-sleepy", "acme/sleepy"), logs) }()
	select {
	case <-logs.seen:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the step never started:\n%s", logs.String())
	}
	cancel()
	const bound = 20 * time.Second // generous: the step sleeps 120 s
	select {
	case resp := <-done:
		if resp.GetSuccess() || resp.GetError() != "build: job cancelled" {
			t.Errorf("Run() = success %v error %q, want build: job cancelled", resp.GetSuccess(), resp.GetError())
		}
	case <-time.After(bound):
		t.Fatalf("Run() still running %s after cancel", bound)
	}
	if left := e.workspaceLeft(t); len(left) > 0 {
		t.Errorf("workspace left behind: %v", left)
	}
}

// TestClassicBuilderKeepsBaseImage: the classic builder still builds RUN
// steps on the base image, and removes only the job's own images.
func TestClassicBuilderKeepsBaseImage(t *testing.T) {
	base := baseImage(t)
	e := newEnv(t, func(c *Config) { c.Builder = BuilderClassic })
	e.git.addRepo(t, "acme/classic", repoFiles{files: map[string]string{
		"Dockerfile": "FROM " + base + " AS build\nRUN echo built > /built.txt\nFROM " + base + "\nCOPY --from=build /built.txt /\n",
	}})
	req := request("job-classic", "acme/classic")
	req.ImageName = "classic:v1"
	resp, _ := runOK(t, e, req)
	if !strings.Contains(resp.GetLogs(), "Step 4/4 : COPY --from=build") {
		t.Errorf("Run().Logs lacks the classic builder's steps:\n%s", resp.GetLogs())
	}
	if resp.GetTotalSteps() != 0 {
		t.Errorf("Run().TotalSteps = %d, want 0 (the classic builder does not count steps)", resp.GetTotalSteps())
	}
	if got := string(imageFileContents(t, resp.GetImageUrl())["built.txt"]); got != "built\n" {
		t.Errorf("image built.txt = %q, want built", got)
	}
	assertImagePresent(t, e, base)
	assertLayersRemoved(t, e, withoutBaseLayers(resp.GetLogs()))
	assertNoLocalImage(t, e, resp.GetImageUrl())
}

// withoutBaseLayers drops from a classic build's log the " ---> id" lines
// that follow a FROM step: they name the base image, which stays.
func withoutBaseLayers(logs string) string {
	var keep []string
	from := false
	for _, line := range strings.Split(logs, "\n") {
		if m := stepRe.FindStringSubmatch(line); m != nil {
			from = strings.HasPrefix(m[2], "FROM ")
		}
		if from && layerRe.MatchString(line) {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}

// TestBuildKitBuildNetwork: with BuildNetwork none, RUN steps see only
// the loopback interface; with the default they have the engine's network.
func TestBuildKitBuildNetwork(t *testing.T) {
	base := baseImage(t)
	for network, want := range map[string]string{"none": "lo\n", "": "eth0\nlo\n"} {
		t.Run("network="+network, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.BuildNetwork = network })
			e.git.addRepo(t, "acme/net", repoFiles{files: map[string]string{
				"Dockerfile": "FROM " + base + "\nRUN echo " + randomHex() + " && ls /sys/class/net > /nets\n",
			}})
			resp, _ := runOK(t, e, request("job-net", "acme/net"))
			if got := string(imageFileContents(t, resp.GetImageUrl())["nets"]); got != want {
				t.Errorf("interfaces a RUN step sees = %q, want %q", got, want)
			}
		})
	}
}

func TestBuildKitRefusesNamedNetwork(t *testing.T) {
	_, err := New(Config{BuildNetwork: "my-net"})
	if err == nil || !strings.Contains(err.Error(), `build network "my-net" is not supported by the BuildKit builder`) {
		t.Errorf("New(BuildNetwork: my-net) = %v, want a refusal naming the network", err)
	}
	if _, err := New(Config{Builder: "kaniko"}); err == nil || !strings.Contains(err.Error(), `unknown builder "kaniko"`) {
		t.Errorf("New(Builder: kaniko) = %v, want unknown builder", err)
	}
}

// pulledImage reads the pushed image at imageURL from the registry, with
// its layers (at least one).
func pulledImage(t *testing.T, imageURL string) (v1.Image, []v1.Layer) {
	t.Helper()
	ref, opts := registryRef(t, imageURL)
	img, err := remote.Image(ref, opts...)
	if err != nil {
		t.Fatalf("remote.Image(%s) = %v", ref, err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) == 0 {
		t.Fatalf("Layers() = %d layers, %v; want some", len(layers), err)
	}
	return img, layers
}

// imageFileContents reads the pushed image's files (later layers win).
func imageFileContents(t *testing.T, imageURL string) map[string][]byte {
	t.Helper()
	_, layers := pulledImage(t, imageURL)
	files := map[string][]byte{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatalf("layer Uncompressed() = %v", err)
		}
		for name, data := range tarFiles(t, rc) {
			files[name] = data
		}
		rc.Close()
	}
	return files
}

// assertTokenNotInImage scans everything the registry holds for the
// pushed image: manifest, config (history included) and every layer, both
// compressed and uncompressed.
func assertTokenNotInImage(t *testing.T, imageURL string) {
	t.Helper()
	img, layers := pulledImage(t, imageURL)
	manifest, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	config, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	blobs := map[string][]byte{"manifest": manifest, "config": config}
	for i, l := range layers {
		for kind, open := range map[string]func() (io.ReadCloser, error){"compressed": l.Compressed, "uncompressed": l.Uncompressed} {
			rc, err := open()
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			blobs[fmt.Sprintf("layer %d (%s)", i, kind)] = data
		}
	}
	for what, data := range blobs {
		if bytes.Contains(data, []byte(goodToken)) {
			t.Errorf("the token is in the pushed image's %s", what)
		}
	}
}

// tarFiles reads a tar stream: every entry but directories, with the
// content of regular files.
func tarFiles(t *testing.T, r io.Reader) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("reading a tar stream: %v", err)
		}
		if h.Typeflag == tar.TypeDir {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %s from a tar stream: %v", h.Name, err)
		}
		files[strings.TrimPrefix(h.Name, "/")] = data
	}
}
