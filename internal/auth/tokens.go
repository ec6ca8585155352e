package auth

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/blacktree/blacktree/internal/redact"
)

// MinTokenLen is the shortest token a token file may hold.
const MinTokenLen = 16

// maxTokenLen bounds a token (and so a token file line) to keep parsing and
// metadata sane.
const maxTokenLen = 4096

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ErrNoTokens is returned when a token file holds no token.
var ErrNoTokens = errors.New("no tokens in file")

// token is one configured token. The secret itself is kept only as its
// digest.
type token struct {
	name        string // "" when the line has none
	digest      [sha256.Size]byte
	fingerprint string // redact.Mask of the token
	line        int
}

// FileError is a problem in a token file. It names the file and line, never
// the token.
type FileError struct {
	Path string
	Line int // 0 when the problem is not on one line
	Err  error
}

func (e *FileError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("token file %s line %d: %v", e.Path, e.Line, e.Err)
	}
	return fmt.Sprintf("token file %s: %v", e.Path, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// parseTokens reads a token file's contents. path is only used in errors.
func parseTokens(path string, r io.Reader) ([]token, error) {
	var (
		out     []token
		byToken = map[[sha256.Size]byte]int{} // digest → line
		byName  = map[string]int{}            // name → line
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxTokenLen+128)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, secret := "", line
		if i := strings.IndexByte(line, ':'); i >= 0 {
			name, secret = line[:i], line[i+1:]
			if !nameRE.MatchString(name) {
				return nil, &FileError{
					Path: path,
					Line: n,
					Err:  errors.New("name before ':' must be 1-64 characters of A-Z a-z 0-9 . _ -"),
				}
			}
		}
		if err := checkToken(secret); err != nil {
			return nil, &FileError{Path: path, Line: n, Err: err}
		}
		t := token{name: name, digest: sha256.Sum256([]byte(secret)), fingerprint: redact.Mask(secret), line: n}
		if first, ok := byToken[t.digest]; ok {
			return nil, &FileError{Path: path, Line: n, Err: fmt.Errorf("duplicate token (same as line %d)", first)}
		}
		if first, ok := byName[t.name]; ok && t.name != "" {
			return nil, &FileError{
				Path: path,
				Line: n,
				Err:  fmt.Errorf("duplicate name %q (first on line %d)", t.name, first),
			}
		}
		byToken[t.digest], byName[t.name] = n, n
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("a line is longer than %d bytes", maxTokenLen)
		}
		return nil, &FileError{Path: path, Err: err}
	}
	if len(out) == 0 {
		return nil, &FileError{Path: path, Err: ErrNoTokens}
	}
	return out, nil
}

func checkToken(s string) error {
	if len(s) < MinTokenLen {
		return fmt.Errorf("token shorter than %d characters", MinTokenLen)
	}
	if len(s) > maxTokenLen {
		return fmt.Errorf("token longer than %d characters", maxTokenLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return errors.New("token must be printable ASCII without spaces")
		}
	}
	return nil
}

// loadTokens reads and parses a token file.
func loadTokens(path string) ([]token, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &FileError{Path: path, Err: err}
	}
	defer f.Close()
	return parseTokens(path, f)
}

// ReadTokenFile reads a file holding one token (the worker's --token-file):
// the first line that is neither blank nor a `#` comment, trimmed. A
// `name:` prefix is stripped, exactly as the hub parses its token file, so
// a line copied from the hub's file works. The error never contains the
// token.
func ReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", &FileError{Path: path, Err: err}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), maxTokenLen+128)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexByte(line, ':'); i >= 0 && nameRE.MatchString(line[:i]) {
			line = line[i+1:]
		}
		if err := checkToken(line); err != nil {
			return "", &FileError{Path: path, Line: n, Err: err}
		}
		return line, nil
	}
	if err := sc.Err(); err != nil {
		return "", &FileError{Path: path, Err: err}
	}
	return "", &FileError{Path: path, Err: ErrNoTokens}
}
