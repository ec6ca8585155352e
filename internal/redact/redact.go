package redact

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"sync"
	"unicode/utf16"
)

// Placeholder replaces every secret.
const Placeholder = "[REDACTED]"

// MinLen is the shortest secret New and Add accept; shorter strings are
// ignored.
const MinLen = 4

// basicAuthUser is the user name git and GitHub pair with a token in HTTP
// basic auth.
const basicAuthUser = "x-access-token:"

// Secrets is a set of secret strings to scrub. The zero value and nil are
// valid, empty sets. Safe for concurrent use.
type Secrets struct {
	mu       sync.RWMutex // guards the following
	secrets  map[string]struct{}
	patterns []string // secrets and their encodings, longest first, unique
	maxLen   int      // len(patterns[0]), or 0
}

// New returns a set holding secrets. Empty strings and strings shorter than
// MinLen are ignored.
func New(secrets ...string) *Secrets {
	s := &Secrets{}
	for _, v := range secrets {
		s.Add(v)
	}
	return s
}

// Add adds a secret. Strings shorter than MinLen are ignored, and so is
// every call on a nil *Secrets.
func (s *Secrets) Add(secret string) {
	if s == nil || len(secret) < MinLen {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.secrets[secret]; ok {
		return
	}
	if s.secrets == nil {
		s.secrets = make(map[string]struct{})
	}
	s.secrets[secret] = struct{}{}
	// Build a new slice: readers hold the old one without the lock.
	patterns := slices.Clone(s.patterns)
	for _, p := range Encodings(secret) {
		if !slices.Contains(patterns, p) {
			patterns = append(patterns, p)
		}
	}
	slices.SortStableFunc(patterns, func(a, b string) int { return len(b) - len(a) })
	s.patterns = patterns
	s.maxLen = len(patterns[0])
}

// Len reports how many secrets the set holds (not counting encodings).
func (s *Secrets) Len() int {
	if s == nil {
		return 0
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.secrets)
}

// Encodings returns secret and the forms it is commonly found in, each at
// least MinLen bytes long and listed once:
//
//   - the secret; URL query- and path-escaped, with upper- and lowercase
//     hex digits; every byte percent-escaped (%xx and %XX);
//   - hex, lower- and uppercase;
//   - JSON string escaping (Go's, which writes <, > and & as \u00xx), and
//     every character as a \u escape with lower- and uppercase digits;
//   - base64 (standard and URL alphabets, padded or not) of the secret and
//     of the basic-auth pair "x-access-token:<secret>";
//   - the base64 characters that depend on the secret alone when it starts
//     at byte offset 0, 1 or 2 (mod 3) of a longer encoded text (standard and URL
//     alphabets): this covers base64("<any user>:<secret>") and a secret
//     anywhere in an encoded document.
//
// The sentinel scan of the end-to-end tests searches the same list.
func Encodings(secret string) []string {
	var out []string
	add := func(p string) {
		if len(p) >= MinLen && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	add(secret)
	for _, escaped := range []string{url.QueryEscape(secret), url.PathEscape(secret)} {
		add(escaped)
		add(lowerEscapes(escaped))
	}
	add(percentAll(secret, hexLower))
	add(percentAll(secret, hexUpper))
	add(hex.EncodeToString([]byte(secret)))
	add(strings.ToUpper(hex.EncodeToString([]byte(secret))))
	add(jsonEscape(secret))
	add(unicodeEscapeAll(secret, hexLower))
	add(unicodeEscapeAll(secret, hexUpper))
	for _, raw := range []string{secret, basicAuthUser + secret} {
		// Padded forms so the padding goes too; unpadded ones (their
		// prefixes) for text that drops it.
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			add(enc.EncodeToString([]byte(raw)))
		}
	}
	for _, offset := range []int{0, 1, 2} {
		for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
			add(base64AtOffset(enc, secret, offset))
		}
	}
	return out
}

const (
	hexLower = "0123456789abcdef"
	hexUpper = "0123456789ABCDEF"
)

// lowerEscapes lowercases the two hex digits of every %XX escape in s,
// leaving the other characters alone.
func lowerEscapes(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = lowerHexDigit(b[i+1]), lowerHexDigit(b[i+2])
			i += 2
		}
	}
	return string(b)
}

func lowerHexDigit(c byte) byte {
	if c >= 'A' && c <= 'F' {
		return c + ('a' - 'A')
	}
	return c
}

// percentAll escapes every byte of s as %hh with the given digits.
func percentAll(s, digits string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		b.WriteByte('%')
		b.WriteByte(digits[s[i]>>4])
		b.WriteByte(digits[s[i]&0xf])
	}
	return b.String()
}

// jsonEscape is s as encoding/json writes it inside a string, without the
// quotes.
func jsonEscape(s string) string {
	b, err := json.Marshal(s)
	if err != nil || len(b) < 2 { // a string always marshals
		return s
	}
	return string(b[1 : len(b)-1])
}

// unicodeEscapeAll writes every UTF-16 code unit of s as \uhhhh.
func unicodeEscapeAll(s, digits string) string {
	var b strings.Builder
	for _, u := range utf16.Encode([]rune(s)) {
		b.WriteString(`\u`)
		for shift := 12; shift >= 0; shift -= 4 {
			b.WriteByte(digits[(u>>shift)&0xf])
		}
	}
	return b.String()
}

// base64AtOffset returns the base64 characters that encode only the bytes
// of secret when secret starts offset bytes (0..2) into the encoded data:
// the characters that straddle a neighbouring byte are dropped at both
// ends.
func base64AtOffset(enc *base64.Encoding, secret string, offset int) string {
	full := enc.EncodeToString(append(make([]byte, offset), secret...))
	first := (offset*8 + 5) / 6            // first character with no bit of the prefix
	last := (offset + len(secret)) * 8 / 6 // characters made of whole secret bits end here
	if first >= last || last > len(full) {
		return ""
	}
	return full[first:last]
}

// snapshot returns the current patterns. A published slice is never
// modified, so callers may use it without the lock.
func (s *Secrets) snapshot() (patterns []string, maxLen int) {
	if s == nil {
		return nil, 0
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.patterns, s.maxLen
}

// Scrub returns text with every secret and encoded secret replaced by
// Placeholder.
func (s *Secrets) Scrub(text string) string {
	patterns, _ := s.snapshot()
	if len(patterns) == 0 {
		return text
	}
	mask := matchMask(text, patterns)
	if mask == nil {
		return text
	}
	var b strings.Builder
	render(&b, text, mask, false)
	return b.String()
}

// Contains reports whether text holds any secret or encoded secret.
func (s *Secrets) Contains(text string) bool {
	patterns, _ := s.snapshot()
	for _, p := range patterns {
		if strings.Contains(text, p) {
			return true
		}
	}
	return false
}

// Holdback returns the length of the longest suffix of b that is a proper
// prefix of a secret or encoded secret: bytes that must not leave yet,
// because the next write may complete the secret. It is at most the longest
// pattern's length minus one.
func (s *Secrets) Holdback(b []byte) int {
	patterns, _ := s.snapshot()
	return holdback(b, patterns)
}

func holdback(b []byte, patterns []string) int {
	best := 0
	for _, p := range patterns {
		for n := min(len(p)-1, len(b)); n > best; n-- {
			if string(b[len(b)-n:]) == p[:n] {
				best = n
				break
			}
		}
	}
	return best
}

// matchMask marks every byte of text covered by any (possibly overlapping)
// occurrence of any pattern. It returns nil when nothing matched.
func matchMask(text string, patterns []string) []bool {
	return markMatches(text, patterns, nil)
}

// markMatches is matchMask adding to mask, which is nil or len(text) long.
func markMatches(text string, patterns []string, mask []bool) []bool {
	for _, p := range patterns {
		for off := 0; off+len(p) <= len(text); {
			i := strings.Index(text[off:], p)
			if i < 0 {
				break
			}
			if mask == nil {
				mask = make([]bool, len(text))
			}
			start := off + i
			for j := start; j < start+len(p); j++ {
				mask[j] = true
			}
			off = start + 1
		}
	}
	return mask
}

// render writes text with each maximal run of masked bytes replaced by one
// Placeholder. prevMasked says the output so far ended with a Placeholder,
// so a run at the start continues it. It reports whether the output now
// ends with a Placeholder.
func render(b *strings.Builder, text string, mask []bool, prevMasked bool) bool {
	if mask == nil {
		b.WriteString(text)
		return prevMasked && text == ""
	}
	in := prevMasked
	for i := 0; i < len(text); i++ {
		switch {
		case mask[i] && !in:
			b.WriteString(Placeholder)
			in = true
		case !mask[i]:
			b.WriteByte(text[i])
			in = false
		}
	}
	return in
}

// Mask returns a fingerprint of token that is safe to log: "sha256:" and
// the first 8 hex digits of the token's SHA-256. An empty token gives
// "none".
func Mask(token string) string {
	if token == "" {
		return "none"
	}
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:4])
}
