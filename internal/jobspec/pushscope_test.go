package jobspec

import (
	"errors"
	"strings"
	"testing"

	"github.com/distribution/reference"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
)

func TestPushScopeCheck(t *testing.T) {
	scope, err := ParsePushScope([]string{"Registry.Example.com/team/", "localhost:5000", "index.docker.io/acme", " "})
	if err != nil {
		t.Fatalf("ParsePushScope() = %v", err)
	}
	if got, want := scope.String(), "registry.example.com/team, localhost:5000, docker.io/acme"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	tests := []struct {
		image string
		ok    bool
	}{
		{image: "registry.example.com/team/app:v1", ok: true},
		{image: "REGISTRY.example.com/team/sub/app", ok: true},
		{image: "registry.example.com/team", ok: true},
		{image: "registry.example.com/team-b/app", ok: false}, // not on a segment boundary
		{image: "registry.example.com/other/app", ok: false},
		{image: "registry.example.com:443/team/app", ok: false}, // another host:port
		{image: "localhost:5000/anything/at/all:x", ok: true},
		{image: "localhost:5001/app", ok: false},
		{image: "acme/app:latest", ok: true}, // docker.io/acme/app
		{image: "docker.io/acme/app", ok: true},
		{image: "registry-1.docker.io/acme/app", ok: true},
		{image: "python:3.12", ok: false}, // docker.io/library/python
		{image: "ghcr.io/another-team/app:latest", ok: false},
	}
	for _, tt := range tests {
		named, err := reference.ParseNormalizedNamed(tt.image)
		if err != nil {
			t.Fatalf("ParseNormalizedNamed(%q) = %v", tt.image, err)
		}
		err = scope.Check(named)
		if (err == nil) != tt.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", tt.image, err, tt.ok)
		}
		if err != nil && (!errors.Is(err, ErrPushOutsideScope) || !strings.Contains(err.Error(), "registry.example.com/team")) {
			t.Errorf("Check(%q) = %v, want ErrPushOutsideScope naming the prefixes", tt.image, err)
		}
	}
}

func TestParsePushScopeRefusesBadPrefixes(t *testing.T) {
	for _, p := range []string{"Bad Registry", "reg.example.com/UPPER", "reg.example.com//x", "https://reg.example.com"} {
		if _, err := ParsePushScope([]string{p}); err == nil {
			t.Errorf("ParsePushScope(%q) = nil error, want a refusal", p)
		}
	}
	s, err := ParsePushScope(nil)
	if err != nil || !s.Empty() {
		t.Errorf("ParsePushScope(nil) = %v, %v; want an empty scope", s, err)
	}
}

func TestValidateChecksPushScope(t *testing.T) {
	scope, err := ParsePushScope([]string{"registry.example.com/team"})
	if err != nil {
		t.Fatal(err)
	}
	req := &blacktreev1.JobRequest{JobId: "j1", RepoUrl: "acme/app", ImageName: "ghcr.io/another-team/app:latest"}
	err = Validate(req, Policy{PushScope: scope})
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "imageName" || !strings.Contains(ve.Reason, "registry.example.com/team") {
		t.Errorf("Validate(outside the scope) = %v, want an imageName error naming the prefix", err)
	}
	req.ImageName = "registry.example.com/team/app:1"
	if err := Validate(req, Policy{PushScope: scope}); err != nil {
		t.Errorf("Validate(inside the scope) = %v, want nil", err)
	}
	req.ImageName = "ghcr.io/another-team/app:latest"
	if err := Validate(req, Policy{}); err != nil {
		t.Errorf("Validate(no scope) = %v, want nil", err)
	}
}
