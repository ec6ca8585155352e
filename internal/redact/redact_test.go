package redact

import (
	"encoding/base64"
	"net/url"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const tok = "ghp_abcDEF123/+=secret" // has characters that URL escaping changes

func TestScrub(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name    string
		secrets []string
		in      string
		want    string
	}{
		{
			name:    "plain",
			secrets: []string{tok},
			in:      "token=" + tok + " end",
			want:    "token=[REDACTED] end",
		},
		{
			name:    "twice",
			secrets: []string{tok},
			in:      tok + tok + "x" + tok,
			want:    "[REDACTED]x[REDACTED]",
		},
		{
			name:    "no secret",
			secrets: []string{tok},
			in:      "nothing here",
			want:    "nothing here",
		},
		{
			name:    "query escaped",
			secrets: []string{tok},
			in:      "u?t=" + url.QueryEscape(tok),
			want:    "u?t=[REDACTED]",
		},
		{
			name:    "path escaped",
			secrets: []string{tok},
			in:      "https://h/" + url.PathEscape(tok) + "/x",
			want:    "https://h/[REDACTED]/x",
		},
		{
			name:    "base64 padded",
			secrets: []string{"abcd1234"},
			in:      "Basic " + b64("abcd1234") + ";",
			want:    "Basic [REDACTED];",
		},
		{
			name:    "base64 url",
			secrets: []string{tok},
			in:      "x" + base64.URLEncoding.EncodeToString([]byte(tok)),
			want:    "x[REDACTED]",
		},
		{
			name:    "basic auth form",
			secrets: []string{tok},
			in:      "Authorization: Basic " + b64("x-access-token:"+tok),
			want:    "Authorization: Basic [REDACTED]",
		},
		{
			name:    "basic auth raw",
			secrets: []string{tok},
			in:      "https://x-access-token:" + tok + "@github.com",
			want:    "https://x-access-token:[REDACTED]@github.com",
		},
		{
			name:    "overlapping secrets",
			secrets: []string{"abcd1234", "1234wxyz"},
			in:      "<abcd1234wxyz>",
			want:    "<[REDACTED]>",
		},
		{
			name:    "adjacent secrets",
			secrets: []string{"abcd1234", "wxyz9876"},
			in:      "abcd1234wxyz9876",
			want:    "[REDACTED]",
		},
		{
			name:    "self overlapping",
			secrets: []string{"abab"},
			in:      "ababab-",
			want:    "[REDACTED]-",
		},
		{
			name:    "nested secret",
			secrets: []string{"secret-outer-value", "outer"},
			in:      "[secret-outer-value][outer]",
			want:    "[[REDACTED]][[REDACTED]]",
		},
		{
			name:    "short ignored",
			secrets: []string{"abc", ""},
			in:      "abc abc",
			want:    "abc abc",
		},
		{
			name:    "min length kept",
			secrets: []string{"abcd"},
			in:      "xabcdx",
			want:    "x[REDACTED]x",
		},
		{
			name:    "empty text",
			secrets: []string{tok},
			in:      "",
			want:    "",
		},
		{
			name:    "multibyte",
			secrets: []string{"pässwörd"},
			in:      "é pässwörd é",
			want:    "é [REDACTED] é",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(tt.secrets...)
			if got := s.Scrub(tt.in); got != tt.want {
				t.Errorf("Scrub(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestNilAndEmpty(t *testing.T) {
	var s *Secrets
	s.Add(tok) // no-op, must not panic
	if got := s.Scrub(tok); got != tok {
		t.Errorf("nil Scrub() = %q, want %q", got, tok)
	}
	if got := s.Len(); got != 0 {
		t.Errorf("nil Len() = %d, want 0", got)
	}
	if s.Contains(tok) {
		t.Errorf("nil Contains() = true, want false")
	}
	var b strings.Builder
	w := s.Stream(&b)
	if _, err := w.Write([]byte("hello " + tok)); err != nil {
		t.Fatalf("Write() = %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	if got, want := b.String(), "hello "+tok; got != want {
		t.Errorf("nil writer output = %q, want %q", got, want)
	}
	var zero Secrets
	zero.Add(tok)
	if got, want := zero.Scrub("a "+tok), "a [REDACTED]"; got != want {
		t.Errorf("zero-value Scrub() = %q, want %q", got, want)
	}
}

func TestAddAndLen(t *testing.T) {
	s := New(tok, tok, "ab")
	if got := s.Len(); got != 1 {
		t.Errorf("Len() = %d, want 1", got)
	}
	s.Add("another-secret")
	if got := s.Len(); got != 2 {
		t.Errorf("Len() = %d, want 2", got)
	}
	if !s.Contains("x another-secret") {
		t.Errorf("Contains() = false, want true")
	}
	if got, want := s.Scrub("another-secret"), Placeholder; got != want {
		t.Errorf("Scrub() = %q, want %q", got, want)
	}
}

func TestHoldback(t *testing.T) {
	s := New("abcdef")
	tests := []struct {
		name string
		in   string
		want int
	}{
		{name: "none", in: "xyz", want: 0},
		{name: "one", in: "xya", want: 1},
		{name: "five", in: "xabcde", want: 5},
		{name: "complete is not held", in: "abcdef", want: 0},
		{name: "empty", in: "", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Holdback([]byte(tt.in)); got != tt.want {
				t.Errorf("Holdback(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestMask(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "empty", in: "", want: "none"},
		// printf -n abc | sha256sum → ba7816bf...
		{name: "abc", in: "abc", want: "sha256:ba7816bf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Mask(tt.in); got != tt.want {
				t.Errorf("Mask(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	if got := Mask(tok); strings.Contains(got, tok[:4]) || len(got) != len("sha256:")+8 {
		t.Errorf("Mask(tok) = %q, want sha256: and 8 hex digits", got)
	}
}
