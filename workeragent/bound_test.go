package workeragent

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/blacktree/blacktree/internal/jobspec"
	"github.com/blacktree/blacktree/internal/redact"
)

// boundScrubbed keeps the head and tail of a long text, scrubbed, even
// when a secret (in its longest encoding) straddles the places where it
// cuts the text before scrubbing.
func TestBoundScrubbed(t *testing.T) {
	tok := "ghp_" + strings.Repeat("T", jobspec.MaxTokenLen-4)
	secrets := redact.New(tok)
	clean := func(s string) string { return secrets.Scrub(s) }
	const limit = 64 << 10
	unicodeTok := strings.NewReplacer("g", `\u0067`, "h", `\u0068`, "p", `\u0070`, "_", `\u005f`, "T", `\u0054`).Replace(tok)
	for name, secret := range map[string]string{
		"raw":     tok,
		"unicode": unicodeTok,
		"base64":  base64.StdEncoding.EncodeToString([]byte("ci:" + tok)),
	} {
		for _, at := range []int{limit / 3, limit/3 + scrubMargin - len(secret)/2, limit / 2} {
			text := strings.Repeat("h", at) + secret + strings.Repeat("m", 10<<20) + secret + "\nerror: failed\n"
			got := boundScrubbed(text, limit, clean)
			if len(got) > limit || !strings.HasPrefix(got, "hhh") || !strings.HasSuffix(got, "error: failed\n") || !strings.Contains(got, " bytes truncated …") {
				t.Fatalf("%s at %d: %d bytes, head %.10q, tail %.20q", name, at, len(got), got, got[len(got)-20:])
			}
			for _, part := range []string{"TTTTTTTT", `\u0054\u0054\u0054`, secret[len(secret)/2 : len(secret)/2+8]} {
				if strings.Contains(got, part) {
					t.Fatalf("%s at %d: %q of the secret survives", name, at, part)
				}
			}
		}
	}
}
