package auth

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Test tokens: long enough, distinct.
const (
	tokA     = "tok-aaaaaaaaaaaaaaaaaaaaaaaa"
	tokB     = "tok-bbbbbbbbbbbbbbbbbbbbbbbb"
	tokC     = "tok-cccccccccccccccccccccccc"
	tokAdmin = "adm-zzzzzzzzzzzzzzzzzzzzzzzz"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseTokens(t *testing.T) {
	tests := []struct {
		name      string
		content   string
		wantNames []string
		wantErr   string // substring; "" for success
	}{
		{
			name:      "named, unnamed, comments, blanks",
			content:   "# workers\n\nw1:" + tokA + "\n  " + tokB + "  \n# w3:" + tokC + "\nw.3_x-y:" + tokC + "\n",
			wantNames: []string{"w1", "", "w.3_x-y"},
		},
		{name: "colon inside named token", content: "w1:abc:" + tokA + "\n", wantNames: []string{"w1"}},
		{name: "crlf line endings", content: "w1:" + tokA + "\r\nw2:" + tokB + "\r\n", wantNames: []string{"w1", "w2"}},
		{name: "short token", content: "# c\nw1:" + tokA + "\nw2:sh0rt\n", wantErr: "line 3: token shorter than 16 characters"},
		{name: "duplicate token", content: "w1:" + tokA + "\n\nw2:" + tokA + "\n", wantErr: "line 3: duplicate token (same as line 1)"},
		{name: "duplicate unnamed token", content: tokA + "\n" + tokA + "\n", wantErr: "line 2: duplicate token (same as line 1)"},
		{name: "two unnamed tokens", content: tokA + "\n" + tokB + "\n", wantNames: []string{"", ""}},
		{name: "duplicate name", content: "w1:" + tokA + "\nw1:" + tokB + "\n", wantErr: `line 2: duplicate name "w1" (first on line 1)`},
		{name: "bad name", content: "bad name:" + tokA + "\n", wantErr: "line 1: name before ':'"},
		{name: "empty name", content: ":" + tokA + "\n", wantErr: "line 1: name before ':'"},
		{name: "space in token", content: "w1:tok-aaaaaa aaaaaaaaaaaaa\n", wantErr: "line 1: token must be printable ASCII"},
		{name: "non-ascii token", content: "w1:tök-aaaaaaaaaaaaaaaaaaa\n", wantErr: "line 1: token must be printable ASCII"},
		{name: "empty file", content: "# nothing\n\n", wantErr: "no tokens in file"},
		{name: "overlong line", content: "w1:" + strings.Repeat("a", maxTokenLen+200) + "\n", wantErr: "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTokens("tokens.txt", strings.NewReader(tt.content))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseTokens() error = %v, want one containing %q", err, tt.wantErr)
				}
				for _, secret := range []string{tokA, tokB, "sh0rt", "aaaaaa"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("parseTokens() error %q contains a token", err)
					}
				}
				var fe *FileError
				if !errors.As(err, &fe) || fe.Path != "tokens.txt" {
					t.Errorf("parseTokens() error = %#v, want a *FileError for tokens.txt", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseTokens() error = %v", err)
			}
			if len(got) != len(tt.wantNames) {
				t.Fatalf("parseTokens() = %d tokens, want %d", len(got), len(tt.wantNames))
			}
			for i, want := range tt.wantNames {
				if !strings.HasPrefix(got[i].fingerprint, "sha256:") {
					t.Errorf("token %d fingerprint = %q, want sha256:...", i, got[i].fingerprint)
				}
				if got[i].name != want {
					t.Errorf("token %d name = %q, want %q", i, got[i].name, want)
				}
			}
		})
	}
	if _, err := parseTokens("x", strings.NewReader("")); !errors.Is(err, ErrNoTokens) {
		t.Errorf("parseTokens(empty) = %v, want ErrNoTokens", err)
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		want    string
		wantErr string
	}{
		{name: "bare", content: tokA + "\n", want: tokA},
		{name: "comment and spaces", content: "# mine\n\n  " + tokA + "  \n", want: tokA},
		{name: "named line from the hub file", content: "w1:" + tokA + "\n", want: tokA},
		{name: "short", content: "abc\n", wantErr: "line 1: token shorter"},
		{name: "empty", content: "\n# x\n", wantErr: "no tokens in file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, dir, "tok", tt.content)
			got, err := ReadTokenFile(p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ReadTokenFile() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ReadTokenFile() = %q, %v, want %q, nil", got, err, tt.want)
			}
		})
	}
	if _, err := ReadTokenFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadTokenFile(missing) = %v, want os.ErrNotExist", err)
	}
}

func TestNew(t *testing.T) {
	dir := t.TempDir()
	workers := writeFile(t, dir, "workers", "w1:"+tokA+"\nw2:"+tokB+"\n")
	admin := writeFile(t, dir, "admin", tokAdmin+"\n")
	adminIsWorker := writeFile(t, dir, "admin-dup", tokB+"\n")
	adminTwo := writeFile(t, dir, "admin-two", tokAdmin+"\n"+tokC+"\n")
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{
			name: "workers and admin",
			cfg:  Config{WorkerTokensFile: workers, AdminTokenFile: admin},
		},
		{
			name: "workers only",
			cfg:  Config{WorkerTokensFile: workers},
		},
		{
			name: "insecure only",
			cfg:  Config{InsecureNoAuth: true},
		},
		{
			name: "mtls only",
			cfg:  Config{AllowMTLSIdentity: true},
		},
		{
			name:    "nothing",
			cfg:     Config{},
			wantErr: "no worker tokens configured: pass --worker-tokens FILE or --insecure-no-auth",
		},
		{
			name:    "missing file",
			cfg:     Config{WorkerTokensFile: filepath.Join(dir, "nope")},
			wantErr: "no such file",
		},
		{
			name:    "admin equals a worker token",
			cfg:     Config{WorkerTokensFile: workers, AdminTokenFile: adminIsWorker},
			wantErr: "line 1: admin token is also a worker token (" + workers + " line 2)",
		},
		{
			name:    "two admin tokens",
			cfg:     Config{WorkerTokensFile: workers, AdminTokenFile: adminTwo},
			wantErr: "line 2: admin token file must hold exactly one token",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(tt.cfg, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || a == nil {
				t.Fatalf("New() = %v, %v, want an Authenticator", a, err)
			}
		})
	}
}
