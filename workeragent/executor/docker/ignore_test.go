package docker

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

// contextEntries builds a context from files (and .dockerignore content
// ignore, when not empty) and returns the tar's entry names, sorted.
func contextEntries(t *testing.T, files map[string]string, ignore string) ([]string, error) {
	t.Helper()
	dir := t.TempDir()
	if ignore != "" {
		files[".dockerignore"] = ignore
	}
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := resolvedPaths{contextDir: dir, dockerfile: filepath.Join(dir, "Dockerfile"), dockerfileInContext: "Dockerfile"}
	ign, err := loadIgnore(r)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := writeContextTar(&buf, r, "", 1<<20, ign); err != nil {
		return nil, err
	}
	names := slices.Collect(maps.Keys(tarFiles(t, &buf)))
	slices.Sort(names)
	return names, nil
}

func TestContextHonoursDockerignore(t *testing.T) {
	files := func() map[string]string {
		return map[string]string{
			"Dockerfile":              "FROM scratch\n",
			"app.txt":                 "a",
			"secret.env":              "s",
			"sub/other.env":           "s",
			"node_modules/keep.txt":   "k",
			"node_modules/junk/x.js":  "j",
			"docs/a.md":               "d",
			"docs/deep/b.md":          "d",
			"build/out.bin":           "b",
			"build/keep/important.go": "i",
		}
	}
	tests := []struct {
		name, ignore string
		want         []string
	}{
		{name: "no .dockerignore", want: []string{"Dockerfile", "app.txt", "build/keep/important.go", "build/out.bin",
			"docs/a.md", "docs/deep/b.md", "node_modules/junk/x.js", "node_modules/keep.txt", "secret.env", "sub/other.env"}},
		{name: "comments and blank lines only", ignore: "# nothing\n\n   \n", want: []string{".dockerignore", "Dockerfile", "app.txt",
			"build/keep/important.go", "build/out.bin", "docs/a.md", "docs/deep/b.md", "node_modules/junk/x.js", "node_modules/keep.txt",
			"secret.env", "sub/other.env"}},
		{name: "directory, glob and ** patterns", ignore: "node_modules\n*.env\n**/*.md\n/build\n",
			want: []string{".dockerignore", "Dockerfile", "app.txt", "sub/other.env"}},
		{name: "exceptions bring entries back; the last match wins", ignore: "node_modules\n!node_modules/keep.txt\nbuild\n!build/keep\nbuild/keep/*.go\n!build/keep/important.go\n",
			want: []string{".dockerignore", "Dockerfile", "app.txt", "build/keep/important.go", "docs/a.md", "docs/deep/b.md",
				"node_modules/keep.txt", "secret.env", "sub/other.env"}},
		{name: "the Dockerfile and .dockerignore are sent even when excluded", ignore: "*\n",
			want: []string{".dockerignore", "Dockerfile"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := contextEntries(t, files(), tc.ignore)
			if err != nil {
				t.Fatalf("context tar: %v", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("context entries = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBadDockerignore(t *testing.T) {
	t.Run("pattern that does not compile", func(t *testing.T) {
		_, err := contextEntries(t, map[string]string{"Dockerfile": "FROM scratch\n"}, "[\n")
		if !errors.Is(err, ErrBadDockerignore) {
			t.Errorf("context tar error = %v, want ErrBadDockerignore", err)
		}
	})
	t.Run("symlink", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/etc/hostname", filepath.Join(dir, ".dockerignore")); err != nil {
			t.Fatal(err)
		}
		_, err := loadIgnore(resolvedPaths{contextDir: dir, dockerfile: filepath.Join(dir, "Dockerfile"), dockerfileInContext: "Dockerfile"})
		if !errors.Is(err, ErrBadDockerignore) {
			t.Errorf("loadIgnore() = %v, want ErrBadDockerignore (never read through a symlink)", err)
		}
	})
}

// TestBuildHonoursDockerignore builds with the real engine and reads the
// pushed image back from the registry: excluded files are not in it, and a
// COPY of an excluded file fails the build as it would with docker build.
func TestBuildHonoursDockerignore(t *testing.T) {
	for _, builder := range []string{BuilderBuildKit, BuilderClassic} {
		t.Run(builder, func(t *testing.T) { testBuildHonoursDockerignore(t, builder) })
	}
}

// testBuildHonoursDockerignore: the classic builder applies .dockerignore
// here (ignore.go); BuildKit's Dockerfile frontend applies it itself.
func testBuildHonoursDockerignore(t *testing.T, builder string) {
	e := newEnv(t, func(c *Config) { c.Builder = builder })
	e.git.addRepo(t, "acme/ignoring", repoFiles{files: map[string]string{
		"Dockerfile":             "FROM scratch\nCOPY . /ctx/\n",
		".dockerignore":          "# keep secrets and dependencies out\n*.env\nnode_modules\n!node_modules/keep.txt\n",
		"app.txt":                "app\n",
		"prod.env":               "TOKEN=do-not-ship\n",
		"node_modules/junk.js":   "junk\n",
		"node_modules/keep.txt":  "keep\n",
		"copy-secret/Dockerfile": "FROM scratch\nCOPY prod.env /\n",
	}})
	req := request("job-ignore", "acme/ignoring")
	req.ImageName = "ignoring:v1"
	resp := e.exec.Run(context.Background(), req, newLogSink(""))
	if !resp.GetSuccess() {
		t.Fatalf("Run() failed: error=%q stage=%v logs:\n%s", resp.GetError(), resp.GetFailedStage(), resp.GetLogs())
	}
	if builder == BuilderClassic && !strings.Contains(resp.GetLogs(), ".dockerignore: 3 patterns") {
		t.Errorf("Run().Logs lacks the .dockerignore line:\n%s", resp.GetLogs())
	}
	got := imageFiles(t, resp.GetImageUrl())
	for _, want := range []string{"ctx/app.txt", "ctx/node_modules/keep.txt"} {
		if !got[want] {
			t.Errorf("image lacks %s; has %v", want, got)
		}
	}
	for _, unwanted := range []string{"ctx/prod.env", "ctx/node_modules/junk.js"} {
		if got[unwanted] {
			t.Errorf("image has %s, which .dockerignore excludes", unwanted)
		}
	}

	req = request("job-ignore-copy", "acme/ignoring")
	req.ImageName, req.DockerfilePath = "ignoring:v2", "copy-secret/Dockerfile"
	resp = e.exec.Run(context.Background(), req, newLogSink(""))
	if resp.GetSuccess() || resp.GetFailedStage() != blacktreev1.JobStage_JOB_STAGE_BUILD {
		t.Errorf("Run() with COPY of an excluded file = success %v stage %v error %q, want a BUILD failure",
			resp.GetSuccess(), resp.GetFailedStage(), resp.GetError())
	}
}

// imageFiles lists the entries other than directories in the layers of the
// image at ref.
func imageFiles(t *testing.T, imageURL string) map[string]bool {
	t.Helper()
	files := map[string]bool{}
	for name := range imageFileContents(t, imageURL) {
		files[name] = true
	}
	return files
}
