package main

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blacktree/blacktree/hub"
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

// TestDeploymentNodeList: hubs listing the nodes of one cluster in any
// order (each its own node first) share the id and the key; one URL keeps
// the derivation from before lists; another set of nodes is another
// deployment.
func TestDeploymentNodeList(t *testing.T) {
	withURL := func(u string) options {
		return options{amqpURL: u, executeQueue: "execute.queue", statusQueue: "status.queue"}
	}
	hubA := withURL("amqp://bt:secret@rabbit-0:5672/prod,amqp://bt:secret@rabbit-1:5672/prod,amqp://bt:secret@rabbit-2:5672/prod")
	hubB := withURL("amqp://bt:secret@rabbit-1:5672/prod, amqp://bt:secret@rabbit-2:5672/prod, amqp://bt:secret@rabbit-0:5672/prod")
	idA, keyA, err := deployment(&hubA)
	if err != nil {
		t.Fatal(err)
	}
	idB, keyB, err := deployment(&hubB)
	if err != nil {
		t.Fatal(err)
	}
	if idA != idB || !bytes.Equal(keyA, keyB) {
		t.Errorf("the same nodes in another order: id %q vs %q, keys equal %v; want the same deployment", idA, idB, bytes.Equal(keyA, keyB))
	}
	if strings.Contains(idA, "secret") {
		t.Errorf("deployment id %q carries the password", idA)
	}

	two := withURL("amqp://bt:secret@rabbit-0:5672/prod,amqp://bt:secret@rabbit-1:5672/prod")
	if id, key, _ := deployment(&two); id == idA || bytes.Equal(key, keyA) {
		t.Errorf("a subset of the nodes gave the same id or key")
	}

	// One URL: the derivation from before lists, so upgraded and older
	// hubs of one deployment agree.
	one := "amqp://bt:secret@rabbit:5672/prod"
	single := withURL(one)
	id, key, _ := deployment(&single)
	legacyKey := sha256.Sum256([]byte("blacktree dispatch key\x00" + one + "\x00execute.queue\x00status.queue"))
	if want := hub.DeploymentID("rabbit:5672/prod", "execute.queue", "status.queue"); id != want || !bytes.Equal(key, legacyKey[:]) {
		t.Errorf("one URL: id %q (want %q) or key changed from the single-URL derivation", id, want)
	}

	bad := withURL("amqp://bt:topsecret@rabbit-0/prod,amqp://bt:topsecret@rabbit-1/staging")
	if _, _, err := deployment(&bad); err == nil || !strings.Contains(err.Error(), "--amqp-url") || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("URLs of two vhosts: err = %v, want an --amqp-url error without the password", err)
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
