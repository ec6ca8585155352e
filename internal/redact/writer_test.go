package redact

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/blacktree/blacktree/internal/syncbuf"
)

// writeChunks writes chunks through a fresh StreamWriter and returns the
// output.
func writeChunks(t testing.TB, s *Secrets, chunks ...string) string {
	t.Helper()
	var b bytes.Buffer
	w := s.Stream(&b)
	for _, c := range chunks {
		n, err := w.Write([]byte(c))
		if err != nil || n != len(c) {
			t.Fatalf("Write(%q) = %d, %v, want %d, nil", c, n, err, len(c))
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	return b.String()
}

func TestWriterSplitEveryOffset(t *testing.T) {
	s := New(tok, "abcd1234", "1234wxyz", "abab")
	inputs := []struct {
		name string
		text string
	}{
		{name: "plain", text: "build: token " + tok + " done\n"},
		{name: "encoded", text: "Basic " + s.encoded(tok, 7) + " and " + s.encoded(tok, 1) + " " + s.encoded(tok, 10)},
		{name: "overlapping", text: "<abcd1234wxyz>"},
		{name: "self overlapping", text: "xabababx ababab"},
		{name: "near misses", text: "abcd123 1234wxy " + tok[:len(tok)-1] + " aba"},
		{name: "secret at edges", text: tok + "---" + tok},
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			want := s.Scrub(in.text)
			for i := 0; i <= len(in.text); i++ {
				if got := writeChunks(t, s, in.text[:i], in.text[i:]); got != want {
					t.Fatalf("split at %d: output = %q, want %q", i, got, want)
				}
				for j := i; j <= len(in.text); j++ {
					if got := writeChunks(t, s, in.text[:i], in.text[i:j], in.text[j:]); got != want {
						t.Fatalf("split at %d,%d: output = %q, want %q", i, j, got, want)
					}
				}
			}
			bytewise := make([]string, len(in.text))
			for i := range in.text {
				bytewise[i] = in.text[i : i+1]
			}
			if got := writeChunks(t, s, bytewise...); got != want {
				t.Fatalf("byte by byte: output = %q, want %q", got, want)
			}
			if strings.Contains(want, tok) || strings.Contains(want, "abcd1234") {
				t.Fatalf("Scrub(%q) = %q still holds a secret", in.text, want)
			}
		})
	}
}

// encoded returns the i-th pattern derived from secret (for test inputs).
func (s *Secrets) encoded(secret string, i int) string { return Encodings(secret)[i] }

func TestWriterRandomChunks(t *testing.T) {
	s := New(tok, "abcd1234", "1234wxyz", "abab", "zzzz")
	alphabet := []string{tok, "abcd", "1234", "wxyz", "ab", "z", "x", "\n", s.encoded(tok, 4), s.encoded(tok, 6)[:5]}
	r := rand.New(rand.NewPCG(1, 2))
	for iter := range 2000 {
		var text strings.Builder
		for range r.IntN(20) {
			text.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		in := text.String()
		var chunks []string
		for rest := in; rest != ""; {
			n := min(len(rest), r.IntN(8)+1)
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
		}
		if got, want := writeChunks(t, s, chunks...), s.Scrub(in); got != want {
			t.Fatalf("iteration %d: chunks %q: output = %q, want %q", iter, chunks, got, want)
		}
	}
}

func FuzzWriterMatchesScrub(f *testing.F) {
	f.Add("token "+tok+" end", uint8(3))
	f.Add("abcd1234wxyz", uint8(1))
	f.Fuzz(func(t *testing.T, in string, step uint8) {
		s := New(tok, "abcd1234", "1234wxyz")
		n := int(step%16) + 1
		var chunks []string
		for rest := in; rest != ""; {
			k := min(n, len(rest))
			chunks = append(chunks, rest[:k])
			rest = rest[k:]
		}
		if got, want := writeChunks(t, s, chunks...), s.Scrub(in); got != want {
			t.Fatalf("output = %q, want %q", got, want)
		}
	})
}

func TestWriterHoldsBackOnlyPrefixes(t *testing.T) {
	s := New("abcdef")
	var b bytes.Buffer
	w := s.Stream(&b)
	if _, err := w.Write([]byte("hello abc")); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "hello "; got != want {
		t.Errorf("after Write output = %q, want %q", got, want)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "hello abc"; got != want {
		t.Errorf("after Flush output = %q, want %q", got, want)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("Write after Close = %v, want %v", err, io.ErrClosedPipe)
	}
}

func TestWriterAsIOWriter(t *testing.T) {
	s := New(tok)
	var b bytes.Buffer
	w := s.Writer(&b)
	if _, err := io.WriteString(w, "a "+tok[:5]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(w, tok[5:]+" b"); err != nil {
		t.Fatal(err)
	}
	c, ok := w.(io.Closer)
	if !ok {
		t.Fatalf("Writer() is %T, want an io.Closer", w)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "a [REDACTED] b"; got != want {
		t.Errorf("output = %q, want %q", got, want)
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

func TestWriterStickyError(t *testing.T) {
	boom := errors.New("boom")
	w := New(tok).Stream(failWriter{boom})
	if _, err := w.Write([]byte("hello")); !errors.Is(err, boom) {
		t.Fatalf("Write() = %v, want %v", err, boom)
	}
	if _, err := w.Write([]byte("again")); !errors.Is(err, boom) {
		t.Errorf("second Write() = %v, want %v", err, boom)
	}
	if err := w.Close(); !errors.Is(err, boom) {
		t.Errorf("Close() = %v, want %v", err, boom)
	}
}

func TestWriterConcurrent(t *testing.T) {
	s := New(tok)
	var out syncbuf.Buffer
	w := s.Stream(&out)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				// Whole lines per Write: each is scrubbed as a unit.
				if _, err := w.Write([]byte("line " + tok + "\n")); err != nil {
					t.Error(err)
					return
				}
				s.Add("late-secret-value") // concurrent Add is safe
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	if strings.Contains(got, tok) {
		t.Errorf("output holds the token")
	}
	if n, want := strings.Count(got, "line [REDACTED]\n"), 8*200; n != want {
		t.Errorf("output has %d scrubbed lines, want %d", n, want)
	}
}
