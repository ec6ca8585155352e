package docker

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/hashicorp/go-hclog"
)

// targetRef is the reference an image is pushed as: registry prefix +
// imageName, tagged `latest` when imageName has no tag. Digests are
// refused (one cannot push to a digest).
func targetRef(registry, imageName string) (reference.NamedTagged, error) {
	full := imageName
	if registry != "" {
		full = registry + "/" + imageName
	}
	named, err := reference.ParseNormalizedNamed(full)
	if err != nil {
		return nil, fmt.Errorf("imageName %q is not a valid image reference: %w", imageName, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return nil, fmt.Errorf("imageName %q names a digest; give a tag", imageName)
	}
	tagged, ok := reference.TagNameOnly(named).(reference.NamedTagged)
	if !ok {
		return nil, fmt.Errorf("imageName %q is not a taggable reference", imageName)
	}
	return tagged, nil
}

// buildRun is one job's image: it builds under a tag unique to the job
// (so concurrent jobs naming the same image never see each other's), and
// cleanup removes everything it made.
type buildRun struct {
	docker  *client.Client
	out     *jobOutput
	log     hclog.Logger
	network string // NetworkMode for RUN steps; "" is the engine default

	jobTag      string   // the unique tag the build produced
	interrupted bool     // the build ended because ctx was done
	imageID     string   // from the stream's aux message, when sent
	layers      []string // intermediate image ids seen in the stream
}

// streamMsg is one JSON message of the engine's build or push stream.
type streamMsg struct {
	Stream      string          `json:"stream"`
	Status      string          `json:"status"`
	ID          string          `json:"id"`
	Progress    json.RawMessage `json:"progressDetail"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
	ErrorText string          `json:"error"`
	Aux       json.RawMessage `json:"aux"`
}

func (m *streamMsg) err() string {
	if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
		return m.ErrorDetail.Message
	}
	return m.ErrorText
}

// errBuildEnded closes the context pipe once the engine is done with it;
// the tar writer seeing it is not a failure of its own.
var errBuildEnded = errors.New("build ended")

// ownTarError reports a failure of the context tar itself (too large,
// unreadable), not one of the reader going away.
func ownTarError(err error) bool {
	return err != nil && !errors.Is(err, errBuildEnded) && !errors.Is(err, io.ErrClosedPipe)
}

var (
	stepRe  = regexp.MustCompile(`^Step (\d+)/\d+ : (.*)$`)
	layerRe = regexp.MustCompile(`^ ---> ([0-9a-f]{12,64})$`)
)

// newJobTag gives the build a worker-private tag of its own: jobRepo
// with a random tag starting with jobTagPrefix. The job's imageName never
// names an image on the engine, so no other job's `FROM` can pick up
// what this job built.
func (b *buildRun) newJobTag() {
	b.jobTag = jobRepo + ":" + jobTagPrefix + randomHex()
}

// build sends the context and Dockerfile to the engine and streams the
// engine's output as lines. An error message in the stream fails the
// build, naming the Dockerfile line of the failing step when known.
func (b *buildRun) build(ctx context.Context, r resolvedPaths, buildArgs map[string]string, maxContext int64) error {
	defer func() { b.interrupted = ctx.Err() != nil }()
	b.newJobTag()
	suffix := strings.TrimPrefix(b.jobTag[strings.LastIndex(b.jobTag, ":")+1:], jobTagPrefix)
	dfName, extraName := r.dockerfileInContext, ""
	if dfName == "" {
		dfName = ".blacktree-dockerfile-" + suffix
		extraName = dfName
	}

	ign, err := loadIgnore(r)
	if err != nil {
		return err
	}
	if ign.patterns > 0 {
		b.out.printf("build: .dockerignore: %d patterns\n", ign.patterns)
	}
	pr, pw := io.Pipe()
	tarDone := make(chan error, 1)
	go func() {
		err := writeContextTar(pw, r, extraName, maxContext, ign)
		pw.CloseWithError(err)
		tarDone <- err
	}()
	// The tar goroutine ends once the engine has read everything or the
	// pipe is closed under it; it is always waited for.
	var tarErr error
	waitTar := func() error {
		pr.CloseWithError(errBuildEnded)
		if tarDone != nil {
			tarErr, tarDone = <-tarDone, nil
		}
		return tarErr
	}
	defer waitTar()

	b.out.printf("build: sending context %s (Dockerfile %s) to the engine\n", r.contextRel, r.dockerfileRel)
	resp, err := b.docker.ImageBuild(ctx, pr, build.ImageBuildOptions{
		Tags:        []string{b.jobTag},
		Dockerfile:  dfName,
		Remove:      true,
		ForceRemove: true,
		NoCache:     true, // every job is removed afterwards; a shared cache would only make removal racy
		Version:     build.BuilderV1,
		NetworkMode: b.network,
		BuildArgs:   classicBuildArgs(buildArgs),
	})
	if err != nil {
		if terr := waitTar(); ownTarError(terr) {
			return terr
		}
		return fmt.Errorf("engine refused the build: %w", err)
	}
	defer resp.Body.Close()

	lines, msgErr, readErr := b.readStream(resp.Body)
	if terr := waitTar(); ownTarError(terr) {
		return terr
	}
	switch {
	case msgErr != "":
		msg := strings.ReplaceAll(strings.TrimSpace(msgErr), dfName, r.dockerfileRel)
		if lines.step > 0 && !strings.Contains(msg, "line ") {
			if line := dockerfileLine(r.dockerfile, lines.step); line > 0 {
				return fmt.Errorf("Dockerfile line %d (%s): %s", line, lines.stepText, msg)
			}
			return fmt.Errorf("step %d (%s): %s", lines.step, lines.stepText, msg)
		}
		return errors.New(msg)
	case readErr != nil:
		return fmt.Errorf("reading the engine's output: %w", readErr)
	}
	b.out.printf("build: built %s\n", b.jobTag)
	return nil
}

// stepState tracks the last "Step N/M : ..." line of a build stream.
type stepState struct {
	step     int
	stepText string
}

// readStream decodes the build stream, writing it as lines. It returns
// the stream's error message, if any, and a read/decode error.
func (b *buildRun) readStream(body io.Reader) (stepState, string, error) {
	var st stepState
	fromStep := false // the last step was a FROM: its " ---> id" is the base image
	emit := func(line string) {
		if m := stepRe.FindStringSubmatch(line); m != nil {
			st.step, _ = strconv.Atoi(m[1])
			st.stepText = m[2]
			fromStep = strings.HasPrefix(strings.ToUpper(m[2]), "FROM ")
		}
		if m := layerRe.FindStringSubmatch(line); m != nil && !fromStep {
			// Only the job's own images: never the base image a FROM names.
			b.layers = append(b.layers, m[1])
		}
		b.out.write(line + "\n")
	}
	lines := lineSplitter{out: b.out, ends: "\r\n", emit: emit}
	dec := json.NewDecoder(bufio.NewReader(body))
	for {
		var m streamMsg
		if err := dec.Decode(&m); err != nil {
			lines.flush()
			if errors.Is(err, io.EOF) {
				return st, "", nil
			}
			return st, "", err
		}
		if e := m.err(); e != "" {
			lines.flush()
			b.out.printf("build: error: %s\n", strings.TrimSpace(e))
			return st, e, nil
		}
		if len(m.Aux) > 0 {
			var aux struct{ ID string }
			if json.Unmarshal(m.Aux, &aux) == nil && aux.ID != "" {
				b.imageID = aux.ID
			}
		}
		text := m.Stream
		if text == "" && m.Status != "" {
			text = strings.TrimSpace(m.ID+" "+m.Status) + "\n"
		}
		lines.write([]byte(text))
	}
}

// cleanup removes the job's image and its intermediate images. It runs
// after every job, on a context of its own so that a cancelled job still
// cleans up. An interrupted legacy build may commit one more step after
// the connection closed, so cleanup then gives the engine a moment and
// also removes descendants of the images the stream named.
func (b *buildRun) cleanup(parent context.Context) {
	ctx, cancel := context.WithTimeout(parent, cleanupTimeout)
	defer cancel()
	if b.interrupted {
		t := time.NewTimer(interruptGrace)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	// A step the engine commits late makes its parents undeletable until
	// it is listed too: retry a few times while removals conflict.
	for attempt := 1; ; attempt++ {
		failed := b.removeOwn(ctx)
		if failed == 0 || attempt == cleanupAttempts || ctx.Err() != nil {
			if failed > 0 {
				b.log.Warn("images of the job left behind", "count", failed)
			}
			return
		}
		t := time.NewTimer(interruptGrace / 2)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// removeOwn removes the job tag and ownImages, returning how many
// removals failed for another reason than "not found".
func (b *buildRun) removeOwn(ctx context.Context) int {
	var targets []string
	if b.jobTag != "" {
		targets = append(targets, b.jobTag)
	}
	targets = append(targets, b.ownImages(ctx)...)
	failed := 0
	for _, t := range targets {
		_, err := b.docker.ImageRemove(ctx, t, image.RemoveOptions{Force: true, PruneChildren: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			failed++
			b.log.Debug("removing image", "image", t, "error", err)
		}
	}
	return failed
}

// ownImages lists the images this build made: those the stream named
// and, transitively, untagged images built on them; children before
// their parents.
func (b *buildRun) ownImages(ctx context.Context) []string {
	short := append([]string(nil), b.layers...)
	if b.imageID != "" {
		short = append(short, strings.TrimPrefix(b.imageID, "sha256:"))
	}
	if len(short) == 0 {
		return nil
	}
	all, err := b.docker.ImageList(ctx, image.ListOptions{All: true})
	if err != nil {
		b.log.Debug("listing images for cleanup", "error", err)
		return short
	}
	own := map[string]bool{}
	for _, im := range all {
		for _, s := range short {
			if strings.HasPrefix(strings.TrimPrefix(im.ID, "sha256:"), s) {
				own[im.ID] = true
			}
		}
	}
	for grew := true; grew; {
		grew = false
		for _, im := range all {
			if !own[im.ID] && own[im.ParentID] && untagged(im.RepoTags) {
				own[im.ID], grew = true, true
			}
		}
	}
	// Children before parents: order by depth in the parent chain.
	parent := map[string]string{}
	for _, im := range all {
		parent[im.ID] = im.ParentID
	}
	depth := func(id string) int {
		d := 0
		for p := parent[id]; p != "" && d < len(all); p = parent[p] {
			d++
		}
		return d
	}
	var ids []string
	for _, im := range all {
		if own[im.ID] {
			ids = append(ids, im.ID)
		}
	}
	sort.SliceStable(ids, func(i, j int) bool { return depth(ids[i]) > depth(ids[j]) })
	return ids
}

// untagged reports an image without tags (old engines list "<none>:<none>").
func untagged(tags []string) bool {
	for _, t := range tags {
		if t != "<none>:<none>" {
			return false
		}
	}
	return true
}

func randomHex() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return strconv.FormatInt(time.Now().UnixNano(), 16)
	}
	return hex.EncodeToString(b[:])
}

// dockerfileLine maps a legacy-builder step number (1-based, every
// instruction counts, ARGs before FROM included) to the line where that
// instruction starts, 0 when unknown.
func dockerfileLine(path string, step int) int {
	ins := dockerfileInstructions(path)
	if step < 1 || step > len(ins) {
		return 0
	}
	return ins[step-1].line
}

// instructionLine is the line where the one instruction whose text is
// text (whitespace and keyword case aside) starts, 0 when none or several
// match.
func instructionLine(path, text string) int {
	want := strings.Fields(text)
	line := 0
	for _, in := range dockerfileInstructions(path) {
		got := strings.Fields(in.text)
		if len(got) != len(want) || len(got) == 0 || !strings.EqualFold(got[0], want[0]) || strings.Join(got[1:], " ") != strings.Join(want[1:], " ") {
			continue
		}
		if line != 0 {
			return 0
		}
		line = in.line
	}
	return line
}

// instruction is one Dockerfile instruction: the line it starts on and its
// text, continuation lines joined.
type instruction struct {
	line int
	text string
}

// dockerfileInstructions lists the instructions of the Dockerfile at path
// (nil if it cannot be read).
func dockerfileInstructions(path string) []instruction {
	data, err := os.ReadFile(path)
	if err != nil || len(data) > maxDockerfileBytes {
		return nil
	}
	var ins []instruction
	cont := false
	for i, raw := range bytes.Split(data, []byte("\n")) {
		line := strings.TrimSpace(string(raw))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		part := strings.TrimSuffix(line, "\\")
		if cont {
			ins[len(ins)-1].text += " " + part
		} else {
			ins = append(ins, instruction{line: i + 1, text: part})
		}
		cont = strings.HasSuffix(line, "\\")
	}
	return ins
}

// classicBuildArgs converts a job's buildArgs to the classic builder's form.
func classicBuildArgs(args map[string]string) map[string]*string {
	if len(args) == 0 {
		return nil
	}
	out := make(map[string]*string, len(args))
	for k, v := range args {
		out[k] = &v
	}
	return out
}
