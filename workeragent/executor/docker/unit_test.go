package docker

import (
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/blacktree/blacktree/workeragent/executor"
)

func TestResolveRepo(t *testing.T) {
	e, err := New(Config{GitBaseURL: "https://git.example.com/base/", AllowedGitHosts: []string{"code.example.org", "intranet.local"}, AllowAnyPush: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	tests := []struct {
		name, repo, want string // want "" means refused
	}{
		{name: "owner/name", repo: "acme/app", want: "https://git.example.com/base/acme/app.git"},
		{name: "owner/name.git", repo: "acme/app.git", want: "https://git.example.com/base/acme/app.git"},
		{name: "base host URL", repo: "https://git.example.com/acme/app", want: "https://git.example.com/acme/app"},
		{name: "allowed host URL", repo: "https://code.example.org/acme/app.git", want: "https://code.example.org/acme/app.git"},
		{name: "dotdot owner", repo: "../etc", want: ""},
		{name: "three parts", repo: "a/b/c", want: ""},
		{name: "http scheme", repo: "http://code.example.org/acme/app", want: ""},
		{name: "file scheme", repo: "file:///etc/passwd", want: ""},
		{name: "ssh scheme", repo: "ssh://git@code.example.org/acme/app", want: ""},
		{name: "credentials", repo: "https://x:tok@code.example.org/acme/app", want: ""},
		{name: "other host", repo: "https://github.com/acme/app", want: ""},
		{name: "private allowed host", repo: "https://intranet.local/acme/app", want: ""},
		{name: "localhost", repo: "https://localhost/acme/app", want: ""},
		{name: "link-local", repo: "https://169.254.169.254/acme/app", want: ""},
		{name: "query", repo: "https://code.example.org/acme/app?x=1", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src, err := e.resolveRepo(tc.repo)
			if tc.want == "" {
				if err == nil {
					t.Errorf("resolveRepo(%q) = %q, want refused", tc.repo, src.url)
				}
				return
			}
			if err != nil || src.url != tc.want {
				t.Errorf("resolveRepo(%q) = %q, %v, want %q", tc.repo, src.url, err, tc.want)
			}
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{GitBaseURL: "ftp://example.com"},
		{GitBaseURL: "https://user:pw@example.com"},
		{Registry: "Bad Registry"},
	} {
		if e, err := New(cfg); err == nil {
			e.Close()
			t.Errorf("New(%+v) = nil error, want refusal", cfg)
		}
	}
}

func TestTargetRef(t *testing.T) {
	tests := []struct{ registry, image, want string }{
		{"reg.example.com/team", "app:1", "reg.example.com/team/app:1"},
		{"127.0.0.1:5000", "app", "127.0.0.1:5000/app:latest"},
		{"", "app:1", "docker.io/library/app:1"},
		{"", "ghcr.io/acme/app:main", "ghcr.io/acme/app:main"},
		{"reg.example.com", "App", ""},
		{"reg.example.com", "app@sha256:" + strings.Repeat("0", 64), ""},
		{"reg.example.com", "app:bad tag", ""},
	}
	for _, tc := range tests {
		ref, err := targetRef(tc.registry, tc.image)
		got := ""
		if err == nil {
			got = ref.String()
		}
		if got != tc.want {
			t.Errorf("targetRef(%q, %q) = %q, %v, want %q", tc.registry, tc.image, got, err, tc.want)
		}
	}
}

func TestJobOutputScrubsAndBoundsTail(t *testing.T) {
	const tok = "s3cr3t-token"
	var sink strings.Builder
	o := newJobOutput(&sink, 16, tok)
	o.printf("auth %s and header %s\n", tok, "eC1hY2Nlc3MtdG9rZW46czNjcjN0LXRva2Vu") // base64("x-access-token:"+tok)
	if strings.Contains(sink.String(), tok) || strings.Contains(sink.String(), "eC1hY2Nlc3MtdG9rZW46") {
		t.Errorf("streamed output = %q, want the token and its basic-auth form scrubbed", sink.String())
	}
	o.write("ééééééééééé") // 22 bytes of 2-byte runes: the tail must not split one
	tail := o.kept()
	if len(tail) > 16 || !utf8.ValidString(tail) || !strings.HasSuffix(tail, "éé") {
		t.Errorf("kept() = %q (%d bytes), want ≤16 bytes of valid UTF-8 ending in the last output", tail, len(tail))
	}
	if got := newJobOutput(nil, 10, "").scrub("plain"); got != "plain" {
		t.Errorf("scrub without secrets = %q, want unchanged", got)
	}
}

func TestDockerfileLine(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/Dockerfile"
	content := "# syntax comment\nARG V=1\n\nFROM scratch\nCOPY a \\\n  /b\n# note\nCOPY c /d\n"
	if err := writeFile(path, content); err != nil {
		t.Fatal(err)
	}
	for step, want := range map[int]int{1: 2, 2: 4, 3: 5, 4: 8, 5: 0} {
		if got := dockerfileLine(path, step); got != want {
			t.Errorf("dockerfileLine(step %d) = %d, want %d", step, got, want)
		}
	}
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }

func TestRegisteredUnderDocker(t *testing.T) {
	ex, err := executor.New(Name, executor.Options{
		GitBaseURL:           "http://127.0.0.1:1",
		AllowedGitHosts:      []string{"git.internal"},
		AllowPrivateGitHosts: true,
		BuildNetwork:         "none",
		Registry:             "reg.example.com/team/",
		LogTailBytes:         1234,
	})
	if err != nil {
		t.Fatalf("executor.New(%q) = %v", Name, err)
	}
	e, ok := ex.(*Executor)
	if !ok {
		t.Fatalf("executor.New(%q) = %T, want *Executor", Name, ex)
	}
	defer e.Close()
	if e.Name() != "docker" || e.cfg.Registry != "reg.example.com/team" || e.cfg.LogTailBytes != 1234 ||
		!e.cfg.AllowPrivateGitHosts || e.cfg.BuildNetwork != "none" || e.cfg.JobTimeout != DefaultJobTimeout || e.cfg.MaxRepoBytes != DefaultMaxRepoBytes {
		t.Errorf("executor.New(%q) config = %+v, want options mapped and defaults filled", Name, e.cfg)
	}
	if src, err := e.resolveRepo("https://git.internal/acme/app"); err != nil {
		t.Errorf("resolveRepo(private allowed host) = %q, %v, want allowed with AllowPrivateGitHosts", src.url, err)
	}
}
