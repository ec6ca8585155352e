package auth

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConsoleLoginRoles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := Config{
		WorkerTokensFile:     write("workers", "w1:worker-token-0123456789\n"),
		AdminTokenFile:       write("admin", "admin-token-0123456789\n"),
		ConsoleTokenFile:     write("console", "console-token-0123456789\n"),
		MaxFailuresPerMinute: 3,
	}
	a, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !a.ConsoleEnabled() {
		t.Fatal("ConsoleEnabled() = false with both tokens")
	}
	role, digest, err := a.ConsoleLogin("10.0.0.1", "admin-token-0123456789")
	if err != nil || role != ConsoleAdmin || digest != sha256.Sum256([]byte("admin-token-0123456789")) {
		t.Fatalf("admin login: %q %v", role, err)
	}
	if role, _, err = a.ConsoleLogin("10.0.0.1", "console-token-0123456789"); err != nil || role != ConsoleViewer {
		t.Fatalf("console login: %q %v", role, err)
	}
	// A worker token is not a console token.
	if _, _, err = a.ConsoleLogin("10.0.0.2", "worker-token-0123456789"); !errors.Is(err, ErrConsoleDenied) {
		t.Fatalf("worker token: %v, want ErrConsoleDenied", err)
	}
	for range 3 {
		_, _, _ = a.ConsoleLogin("10.0.0.2", "wrong")
	}
	if _, _, err = a.ConsoleLogin("10.0.0.2", "admin-token-0123456789"); !errors.Is(err, ErrConsoleLimited) {
		t.Fatalf("after failures: %v, want ErrConsoleLimited even with the right token", err)
	}

	// A rotated admin token ends its sessions.
	write("admin", "admin-token-rotated-0123456789\n")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := a.ConsoleRole(digest); got != "" {
		t.Fatalf("ConsoleRole(old admin digest) after rotation = %q, want \"\"", got)
	}
}

func TestConsoleTokenMustDiffer(t *testing.T) {
	dir := t.TempDir()
	admin := filepath.Join(dir, "admin")
	console := filepath.Join(dir, "console")
	_ = os.WriteFile(admin, []byte("same-token-0123456789\n"), 0o600)
	_ = os.WriteFile(console, []byte("same-token-0123456789\n"), 0o600)
	_, err := New(Config{InsecureNoAuth: true, AdminTokenFile: admin, ConsoleTokenFile: console}, nil)
	if err == nil || !strings.Contains(err.Error(), "console token is the admin token") || strings.Contains(err.Error(), "same-token") {
		t.Fatalf("New() = %v, want a refusal that names no token", err)
	}
}
