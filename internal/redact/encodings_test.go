package redact

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// TestScrubEncodings builds each encoded form independently of Encodings,
// embeds the secret in surrounding text before encoding where the encoding
// mixes neighbours (base64), and checks that Scrub takes out the secret's
// share of the encoded text.
func TestScrubEncodings(t *testing.T) {
	const secret = "ghp_Abc<De>&f123/+=xyz" // JSON-, URL- and base64-hostile characters
	percent := func(s, format string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			fmt.Fprintf(&b, format, s[i])
		}
		return b.String()
	}
	unicode := func(s, format string) string {
		var b strings.Builder
		for _, r := range s {
			fmt.Fprintf(&b, format, r)
		}
		return b.String()
	}
	type form struct {
		name    string
		in      string
		minGone int // bytes of in that must be replaced
	}
	forms := []form{
		{"hex lower", "id=" + hex.EncodeToString([]byte(secret)) + ";", 2 * len(secret)},
		{"hex upper", "id=" + strings.ToUpper(hex.EncodeToString([]byte(secret))) + ";", 2 * len(secret)},
		{"percent lower", "t=" + percent(secret, "%%%02x") + "&", 3 * len(secret)},
		{"percent upper", "t=" + percent(secret, "%%%02X") + "&", 3 * len(secret)},
		{"query escape lower", "t=" + strings.NewReplacer("%2F", "%2f", "%2B", "%2b", "%3D", "%3d", "%3C", "%3c", "%3E", "%3e").Replace(url.QueryEscape(secret)) + "&", len(secret)},
		{"json", `{"t":"` + strings.NewReplacer("<", `\u003c`, ">", `\u003e`, "&", `\u0026`).Replace(secret) + `"}`, len(secret)},
		{"json unicode lower", `{"t":"` + unicode(secret, `\u%04x`) + `"}`, 6 * len(secret)},
		{"json unicode upper", `{"t":"` + unicode(secret, `\u%04X`) + `"}`, 6 * len(secret)},
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		for _, prefix := range []string{"", "a", "ab", "abc", "someone:", "x-access-token:", "{\"auth\":\""} {
			raw := prefix + secret + "@tail of the document"
			// Characters that carry only the secret's bits: all but about
			// one at each end.
			forms = append(forms, form{
				name:    fmt.Sprintf("base64 %s prefix %q", alphabet(enc), prefix),
				in:      "Basic " + enc.EncodeToString([]byte(raw)),
				minGone: len(secret)*8/6 - 2,
			})
		}
	}
	s := New(secret)
	for _, f := range forms {
		t.Run(f.name, func(t *testing.T) {
			out := s.Scrub(f.in)
			n := strings.Count(out, Placeholder)
			if n == 0 {
				t.Fatalf("Scrub(%q) = %q: nothing redacted", f.in, out)
			}
			if gone := len(f.in) - len(out) + n*len(Placeholder); gone < f.minGone {
				t.Fatalf("Scrub(%q) = %q: %d bytes replaced, want >= %d", f.in, out, gone, f.minGone)
			}
		})
	}
}

func alphabet(enc *base64.Encoding) string {
	if enc == base64.URLEncoding {
		return "url"
	}
	return "std"
}

// TestEncodingsShortSecret: every form of a MinLen secret is long enough
// to be a pattern, and no form is empty.
func TestEncodingsShortSecret(t *testing.T) {
	for _, p := range Encodings("abcd") {
		if len(p) < MinLen {
			t.Fatalf("pattern %q shorter than MinLen", p)
		}
	}
}
