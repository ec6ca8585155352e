package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blacktree/blacktree/internal/auth"
)

func TestDeployment(t *testing.T) {
	base := options{amqpURL: "amqp://bt:secret-one@rabbit:5672/prod", executeQueue: "execute.queue", statusQueue: "status.queue"}
	id, key, err := deployment(&base)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(id, "secret") || !strings.HasPrefix(id, "dep-") || strings.Contains(id, ".") {
		t.Errorf("deployment id = %q, want dep-<hex> without the broker password", id)
	}
	same := base
	id2, key2, _ := deployment(&same)
	if id2 != id || !bytes.Equal(key2, key) {
		t.Errorf("the same broker and queues gave another id or key")
	}
	otherPassword := base
	otherPassword.amqpURL = "amqp://bt:secret-two@rabbit:5672/prod"
	id3, key3, _ := deployment(&otherPassword)
	if id3 != id || bytes.Equal(key3, key) {
		t.Errorf("another password: id %q (want %q, the same deployment) and the same key (want another)", id3, id)
	}
	otherQueue := base
	otherQueue.statusQueue = "status.staging"
	if id4, _, _ := deployment(&otherQueue); id4 == id {
		t.Errorf("another status queue gave the same deployment id")
	}

	keyFile := filepath.Join(t.TempDir(), "dispatch.key")
	if err := os.WriteFile(keyFile, []byte("a-shared-dispatch-key-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withFile := otherPassword
	withFile.dispatchKeyFile = keyFile
	_, k5, err := deployment(&withFile)
	if err != nil || string(k5) != "a-shared-dispatch-key-0123" {
		t.Errorf("--dispatch-key-file key = %q, %v; want the file's key", k5, err)
	}
	if err := os.WriteFile(keyFile, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := deployment(&withFile); err == nil {
		t.Errorf("a 5-character --dispatch-key-file was accepted")
	}
}

func TestCredentialKey(t *testing.T) {
	tests := []struct {
		id   auth.Identity
		want string
	}{
		{id: auth.Identity{Name: "pool-a", Kind: auth.KindToken, Fingerprint: "sha256:ab12cd34"}, want: "token:pool-a"},
		{id: auth.Identity{Kind: auth.KindToken, Fingerprint: "sha256:ab12cd34"}, want: "token:sha256:ab12cd34"},
		{id: auth.Identity{Name: "worker-1", Kind: auth.KindMTLS, Fingerprint: "sha256:00ff00ff"}, want: "mtls:worker-1"},
		{id: auth.Identity{Kind: auth.KindInsecure}, want: "insecure:"},
	}
	for _, tt := range tests {
		if got := credentialKey(tt.id); got != tt.want {
			t.Errorf("credentialKey(%+v) = %q, want %q", tt.id, got, tt.want)
		}
	}
}
