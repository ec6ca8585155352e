package jobspec

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

func validRequest() *blacktreev1.JobRequest {
	return &blacktreev1.JobRequest{JobId: "job-1", RepoUrl: "user/reponame", Branch: "main",
		DockerfilePath: "Dockerfile", ContextDir: ".", ImageName: "myapp:latest", GithubToken: "ghp_abc"}
}

func TestValidate(t *testing.T) {
	policy := Policy{AllowedHosts: []string{"github.com", "git.example.com:8443"}}
	tests := []struct {
		name      string
		mutate    func(*blacktreev1.JobRequest)
		policy    *Policy
		wantField string // "" = valid
		wantIn    string
	}{
		{
			name:   "seed example",
			mutate: func(*blacktreev1.JobRequest) {},
		},
		{
			name:   "https on allowed host",
			mutate: func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://github.com/user/repo.git" },
		},
		{
			name:   "https on allowed host with port",
			mutate: func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://git.example.com:8443/a/b" },
		},
		{
			name:   "empty optional fields",
			mutate: func(r *blacktreev1.JobRequest) { r.Branch, r.DockerfilePath, r.ContextDir = "", "", "" },
		},
		{
			name:   "nested paths",
			mutate: func(r *blacktreev1.JobRequest) { r.DockerfilePath, r.ContextDir = "build/Dockerfile", "./src/app" },
		},
		{
			name:   "registry image",
			mutate: func(r *blacktreev1.JobRequest) { r.ImageName = "registry.example.com:5000/team/app:v1.2" },
		},
		{
			name:      "missing jobId",
			mutate:    func(r *blacktreev1.JobRequest) { r.JobId = "" },
			wantField: "jobId",
			wantIn:    "missing",
		},
		{
			name:      "jobId with slash",
			mutate:    func(r *blacktreev1.JobRequest) { r.JobId = "a/b" },
			wantField: "jobId",
			wantIn:    "only letters",
		},
		{
			name:      "jobId too long",
			mutate:    func(r *blacktreev1.JobRequest) { r.JobId = strings.Repeat("a", 129) },
			wantField: "jobId",
			wantIn:    "longer",
		},
		{
			name:      "missing repoUrl",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "" },
			wantField: "repoUrl",
			wantIn:    "missing",
		},
		{
			name:      "file URL",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "file:///etc/passwd" },
			wantField: "repoUrl",
			wantIn:    `scheme "file"`,
		},
		{
			name:      "ssh URL",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "ssh://git@github.com/a/b" },
			wantField: "repoUrl",
			wantIn:    `scheme "ssh"`,
		},
		{
			name:      "http URL",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "http://github.com/a/b" },
			wantField: "repoUrl",
			wantIn:    `scheme "http"`,
		},
		{
			name:      "other host",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://evil.example.org/a/b" },
			wantField: "repoUrl",
			wantIn:    "not in the allowed",
		},
		{
			name:      "credentials in URL",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://user:pw@github.com/a/b" },
			wantField: "repoUrl",
			wantIn:    "credentials",
		},
		{
			name:      "localhost",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://localhost/a/b" },
			wantField: "repoUrl",
			wantIn:    "local, private or metadata",
		},
		{
			name:      "loopback IP",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://127.0.0.1/a/b" },
			wantField: "repoUrl",
			wantIn:    "local, private or metadata",
		},
		{
			name:      "metadata IP",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://169.254.169.254/latest" },
			wantField: "repoUrl",
			wantIn:    "local, private or metadata",
		},
		{
			name:      "IPv6 loopback",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://[::1]/a/b" },
			wantField: "repoUrl",
			wantIn:    "local, private or metadata",
		},
		// Issue 7's hostile-input list, row by row: local transports and
		// paths, local/link-local/metadata addresses in every spelling,
		// credentials in any part of the URL.
		{
			name:      "ssh URL to localhost path",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "ssh://localhost/srv/git/repo.git" },
			wantField: "repoUrl",
			wantIn:    `scheme "ssh"`,
		},
		{
			name:      "ssh URL without host",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "ssh:///etc/passwd" },
			wantField: "repoUrl",
			wantIn:    `scheme "ssh"`,
		},
		{
			name:      "git+ssh URL",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "git+ssh://github.com/a/b" },
			wantField: "repoUrl",
			wantIn:    `scheme "git+ssh"`,
		},
		{
			name:      "git protocol URL",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "git://github.com/a/b" },
			wantField: "repoUrl",
			wantIn:    `scheme "git"`,
		},
		{
			name:      "file URL with host",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "file://localhost/etc/passwd" },
			wantField: "repoUrl",
			wantIn:    `scheme "file"`,
		},
		{
			name:      "file without slashes",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "file:/etc/passwd" },
			wantField: "repoUrl",
			wantIn:    "neither owner/name nor an https:// URL",
		},
		{
			name:      "scp-style ssh",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "git@github.com:a/b.git" },
			wantField: "repoUrl",
			wantIn:    "neither owner/name nor an https:// URL",
		},
		{
			name:      "absolute local path",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "/srv/git/repo.git" },
			wantField: "repoUrl",
			wantIn:    "neither owner/name nor an https:// URL",
		},
		{
			name:      "relative local path",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "./repo" },
			wantField: "repoUrl",
			wantIn:    "neither owner/name nor an https:// URL",
		},
		{
			name:      "git ext transport",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "ext::sh" },
			wantField: "repoUrl",
			wantIn:    "neither owner/name nor an https:// URL",
		},
		{
			name:      "loopback with port",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://127.0.0.1:8443/a/b" },
			wantField: "repoUrl",
			wantIn:    "local, private or metadata",
		},
		{
			name:      "other loopback IP",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://127.8.9.10/a/b" },
			wantField: "repoUrl",
			wantIn:    "local, private or metadata",
		},
		{
			name:      "IPv4-mapped IPv6 loopback",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://[::ffff:127.0.0.1]/a/b" },
			wantField: "repoUrl",
			wantIn:    "local, private or metadata",
		},
		{
			name:      "unspecified address",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://0.0.0.0/a/b" },
			wantField: "repoUrl",
			wantIn:    "local, private or metadata",
		},
		{
			name:      "link-local IPv4",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://169.254.1.1/a/b" },
			wantField: "repoUrl",
			wantIn:    "local, private or metadata",
		},
		{
			name:      "link-local IPv6",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://[fe80::1]/a/b" },
			wantField: "repoUrl",
			wantIn:    "local, private or metadata",
		},
		{
			name:      "AWS IPv6 metadata",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://[fd00:ec2::254]/latest" },
			wantField: "repoUrl",
			wantIn:    "local, private or metadata",
		},
		{
			name:      "GCP metadata name",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://metadata.google.internal/a/b" },
			wantField: "repoUrl",
			wantIn:    "local, private or metadata",
		},
		{
			name:      "localhost subdomain",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://git.localhost/a/b" },
			wantField: "repoUrl",
			wantIn:    "local, private or metadata",
		},
		{
			name:      "uppercase localhost",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://LOCALHOST/a/b" },
			wantField: "repoUrl",
			wantIn:    "local, private or metadata",
		},
		{
			name:      "private range",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://192.168.1.10/a/b" },
			wantField: "repoUrl",
			wantIn:    "local, private or metadata",
		},
		// Other spellings of 127.0.0.1 are not parsed as IPs here; the
		// host allowlist refuses them.
		{
			name:      "decimal loopback",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://2130706433/a/b" },
			wantField: "repoUrl",
			wantIn:    "not in the allowed",
		},
		{
			name:      "short loopback",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://127.1/a/b" },
			wantField: "repoUrl",
			wantIn:    "not in the allowed",
		},
		{
			name:      "hex loopback",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://0x7f.0.0.1/a/b" },
			wantField: "repoUrl",
			wantIn:    "not in the allowed",
		},
		{
			name:      "trailing-dot localhost",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://localhost./a/b" },
			wantField: "repoUrl",
			wantIn:    "not in the allowed",
		},
		{
			name:      "token as user",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://ghp_abc@github.com/a/b" },
			wantField: "repoUrl",
			wantIn:    "credentials",
		},
		{
			name:      "empty user with password",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://:pw@github.com/a/b" },
			wantField: "repoUrl",
			wantIn:    "credentials",
		},
		{
			name:      "allowed host as userinfo",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://github.com@evil.example.org/a/b" },
			wantField: "repoUrl",
			wantIn:    "credentials",
		},
		{
			name:      "query string",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://github.com/a/b?access_token=x" },
			wantField: "repoUrl",
			wantIn:    "query strings",
		},
		{
			name:      "no repository path",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://github.com/" },
			wantField: "repoUrl",
			wantIn:    "does not name a repository",
		},
		{name: "listed private host still refused", mutate: func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://10.0.0.5/a/b" },
			policy: &Policy{AllowedHosts: []string{"10.0.0.5"}}, wantField: "repoUrl", wantIn: "private"},
		{name: "listed private host with opt-in", mutate: func(r *blacktreev1.JobRequest) { r.RepoUrl = "https://10.0.0.5/a/b" },
			policy: &Policy{AllowedHosts: []string{"10.0.0.5"}, AllowPrivateHosts: true}},
		{
			name:      "owner/name traversal",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "../etc" },
			wantField: "repoUrl",
			wantIn:    "neither",
		},
		{
			name:      "owner/name dotdot",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "a/.." },
			wantField: "repoUrl",
			wantIn:    "neither",
		},
		{
			name:      "repo URL with space",
			mutate:    func(r *blacktreev1.JobRequest) { r.RepoUrl = "a/b c" },
			wantField: "repoUrl",
			wantIn:    "control",
		},
		{
			name:      "branch option injection",
			mutate:    func(r *blacktreev1.JobRequest) { r.Branch = "--upload-pack=x" },
			wantField: "branch",
			wantIn:    "not a valid git ref",
		},
		{
			name:      "branch dotdot",
			mutate:    func(r *blacktreev1.JobRequest) { r.Branch = "a..b" },
			wantField: "branch",
			wantIn:    "not a valid git ref",
		},
		{
			name:      "dockerfile traversal",
			mutate:    func(r *blacktreev1.JobRequest) { r.DockerfilePath = "../../etc/passwd" },
			wantField: "dockerfilePath",
			wantIn:    "leaves the repository",
		},
		{
			name:      "dockerfile absolute",
			mutate:    func(r *blacktreev1.JobRequest) { r.DockerfilePath = "/etc/passwd" },
			wantField: "dockerfilePath",
			wantIn:    "absolute",
		},
		{
			name:      "context traversal mid-path",
			mutate:    func(r *blacktreev1.JobRequest) { r.ContextDir = "src/../../x" },
			wantField: "contextDir",
			wantIn:    "leaves the repository",
		},
		{
			name:      "context backslash",
			mutate:    func(r *blacktreev1.JobRequest) { r.ContextDir = `..\x` },
			wantField: "contextDir",
			wantIn:    "backslashes",
		},
		{
			name:      "missing image",
			mutate:    func(r *blacktreev1.JobRequest) { r.ImageName = "" },
			wantField: "imageName",
			wantIn:    "missing",
		},
		{
			name:      "uppercase image",
			mutate:    func(r *blacktreev1.JobRequest) { r.ImageName = "MyApp:latest" },
			wantField: "imageName",
			wantIn:    "not a valid image reference",
		},
		{
			name:      "image with spaces",
			mutate:    func(r *blacktreev1.JobRequest) { r.ImageName = "my app" },
			wantField: "imageName",
			wantIn:    "not a valid image reference",
		},
		{
			name:      "image bad tag",
			mutate:    func(r *blacktreev1.JobRequest) { r.ImageName = "app:-bad" },
			wantField: "imageName",
			wantIn:    "not a valid image reference",
		},
		{
			name:      "token with newline",
			mutate:    func(r *blacktreev1.JobRequest) { r.GithubToken = "abc\nHost: x" },
			wantField: "githubToken",
			wantIn:    "control",
		},
		{
			name:      "token too long",
			mutate:    func(r *blacktreev1.JobRequest) { r.GithubToken = strings.Repeat("t", MaxTokenLen+1) },
			wantField: "githubToken",
			wantIn:    "longer",
		},
		{
			name:      "bad label",
			mutate:    func(r *blacktreev1.JobRequest) { r.WorkerLabels = map[string]string{"a b": "c"} },
			wantField: "workerLabels",
			wantIn:    "not a valid",
		},
		{
			name:      "bad build arg name",
			mutate:    func(r *blacktreev1.JobRequest) { r.BuildArgs = map[string]string{"1VERSION": "x"} },
			wantField: "buildArgs",
			wantIn:    "not a valid ARG name",
		},
		{
			name:      "build arg with newline",
			mutate:    func(r *blacktreev1.JobRequest) { r.BuildArgs = map[string]string{"VERSION": "1\nRUN x"} },
			wantField: "buildArgs",
			wantIn:    "control",
		},
		{
			name: "build arg too long",
			mutate: func(r *blacktreev1.JobRequest) {
				r.BuildArgs = map[string]string{"V": strings.Repeat("v", MaxBuildArgLen+1)}
			},
			wantField: "buildArgs",
			wantIn:    "longer",
		},
		{
			name: "too many build args",
			mutate: func(r *blacktreev1.JobRequest) {
				r.BuildArgs = map[string]string{}
				for i := range MaxBuildArgs + 1 {
					r.BuildArgs[fmt.Sprintf("A%d", i)] = "x"
				}
			},
			wantField: "buildArgs",
			wantIn:    "more than",
		},
		{
			name:      "timeout too long",
			mutate:    func(r *blacktreev1.JobRequest) { r.TimeoutSeconds = MaxTimeoutSeconds + 1 },
			wantField: "timeoutSeconds",
			wantIn:    "more than",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := validRequest()
			tt.mutate(req)
			p := policy
			if tt.policy != nil {
				p = *tt.policy
			}
			err := Validate(req, p)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate() = %v, want *ValidationError wrapping ErrInvalid", err)
			}
			if ve.Field != tt.wantField || !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("Validate() = %q (field %s), want field %s mentioning %q", err, ve.Field, tt.wantField, tt.wantIn)
			}
			if tok := req.GetGithubToken(); len(tok) > 3 && strings.Contains(err.Error(), tok) {
				t.Errorf("Validate() = %q, leaks the token", err)
			}
		})
	}
}

func TestValidateDefaultPolicyAllowsOnlyGitHub(t *testing.T) {
	req := validRequest()
	req.RepoUrl = "https://gitlab.com/a/b"
	if err := Validate(req, Policy{}); err == nil {
		t.Errorf("Validate(gitlab, default policy) = nil, want refusal")
	}
	req.RepoUrl = "https://github.com/a/b"
	if err := Validate(req, Policy{}); err != nil {
		t.Errorf("Validate(github, default policy) = %v, want nil", err)
	}
}

// The image-name memo only ever answers for names that parsed, stays
// bounded, and a name it forgot is parsed again.
func TestValidImageNameMemo(t *testing.T) {
	set := &stringSet{max: 3}
	for _, s := range []string{"a:1", "b:1", "c:1"} {
		set.add(s)
	}
	if !set.has("c:1") {
		t.Fatalf("has(c:1) = false, want true")
	}
	set.add("d:1") // full: starts over
	if set.has("a:1") || !set.has("d:1") {
		t.Errorf("after overflow has(a:1), has(d:1) = %v, %v, want false, true", set.has("a:1"), set.has("d:1"))
	}
	for _, tc := range []struct {
		name, image string
		ok          bool
	}{
		{name: "valid twice (second from the memo)", image: "registry.example.com/team/app:v1", ok: true},
		{name: "valid twice again", image: "registry.example.com/team/app:v1", ok: true},
		{name: "upper case stays invalid", image: "Registry/App:v1", ok: false},
		{name: "upper case stays invalid twice", image: "Registry/App:v1", ok: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := validImageName(tc.image, PushScope{}); (err == nil) != tc.ok {
				t.Errorf("validImageName(%q) = %v, want ok=%v", tc.image, err, tc.ok)
			}
		})
	}
	if validImageNames.has("Registry/App:v1") {
		t.Error("memo has an invalid name, want only successes")
	}
}
