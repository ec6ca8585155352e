package jobspec

import (
	"math"
	"unicode/utf16"
	"unicode/utf8"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The fast JobRequest decoder. DecodeRequest runs once per job on the hub's
// hot path, and the general path parses every body twice (encoding/json
// into a map to find unknown keys, then protojson): 16% of the hub's CPU
// while draining. decodeRequestFast reads the shape control planes send —
// one JSON object whose keys are JobRequest fields, under their JSON or
// proto names — straight into the struct, in one pass, and gives up
// (ok = false) on anything else, so that DecodeRequest takes the general
// path and every error, unknown key and odd case is handled exactly as
// before:
//
//   - a key that is not a JobRequest field, or a field given twice (also
//     once under each name), or a worker label key given twice;
//   - a value of another JSON type than the field's, null included;
//   - a number for timeout_seconds that is not a plain decimal integer
//     within uint32 (fraction, exponent, sign, leading zero), or a
//     number given as a string;
//   - a string with a raw control character, an unknown escape or a
//     \u escape of a surrogate half;
//   - anything after the closing brace but whitespace.
//
// The body has already been checked to be valid UTF-8 and within
// MaxRequestBytes. If JobRequest's descriptor ever stops matching
// requestLayout, the fast path switches itself off;
// TestRequestLayoutMatchesDescriptor fails so that someone updates this
// file.

// requestLayout is the JobRequest field list decodeRequestFast is written
// against, in declaration order.
var requestLayout = [...]struct {
	number protoreflect.FieldNumber
	kind   protoreflect.Kind
	isMap  bool
}{
	{1, protoreflect.StringKind, false}, // job_id
	{2, protoreflect.StringKind, false}, // repo_url
	{3, protoreflect.StringKind, false}, // branch
	{4, protoreflect.StringKind, false}, // dockerfile_path
	{5, protoreflect.StringKind, false}, // context_dir
	{6, protoreflect.StringKind, false}, // image_name
	{7, protoreflect.StringKind, false}, // github_token
	{8, protoreflect.MessageKind, true}, // worker_labels (map<string, string>)
	{9, protoreflect.Uint32Kind, false}, // timeout_seconds
}

const (
	reqJobID = iota
	reqRepoURL
	reqBranch
	reqDockerfilePath
	reqContextDir
	reqImageName
	reqGithubToken
	reqWorkerLabels
	reqTimeoutSeconds
)

// requestKeys is requestFields when JobRequest's descriptor matches
// requestLayout, so that an index names the same field in both; nil
// otherwise (fast path off).
var requestKeys = requestKeysIfLayoutMatches()

func requestKeysIfLayoutMatches() map[string]int {
	md := (&blacktreev1.JobRequest{}).ProtoReflect().Descriptor()
	fds := md.Fields()
	if fds.Len() != len(requestLayout) || md.Oneofs().Len() != 0 {
		return nil
	}
	for i, want := range requestLayout {
		fd := fds.Get(i)
		if fd.Number() != want.number || fd.Kind() != want.kind || fd.IsMap() != want.isMap ||
			fd.IsList() || (!want.isMap && fd.HasPresence()) {
			return nil
		}
		if want.isMap && (fd.MapKey().Kind() != protoreflect.StringKind || fd.MapValue().Kind() != protoreflect.StringKind) {
			return nil
		}
	}
	return requestFields
}

// decodeRequestFast decodes body into a JobRequest, or reports !ok for
// anything it does not model (see above).
func decodeRequestFast(body []byte) (_ *blacktreev1.JobRequest, ok bool) {
	if requestKeys == nil {
		return nil, false
	}
	d := jsonReader{b: body}
	if !d.consume('{') {
		return nil, false
	}
	req := &blacktreev1.JobRequest{}
	var seen uint16
	if !d.consume('}') {
		for {
			key, ok := d.str()
			if !ok || !d.consume(':') {
				return nil, false
			}
			i, known := requestKeys[string(key)]
			if !known || seen&(1<<i) != 0 {
				return nil, false
			}
			seen |= 1 << i
			switch i {
			case reqWorkerLabels:
				req.WorkerLabels, ok = d.labels()
			case reqTimeoutSeconds:
				req.TimeoutSeconds, ok = d.uint32()
			default:
				var s []byte
				if s, ok = d.str(); ok {
					*stringField(req, i) = string(s)
				}
			}
			if !ok {
				return nil, false
			}
			if d.consume(',') {
				continue
			}
			if d.consume('}') {
				break
			}
			return nil, false
		}
	}
	d.space()
	if d.i != len(d.b) {
		return nil, false
	}
	return req, true
}

// stringField is the string field at requestLayout index i.
func stringField(req *blacktreev1.JobRequest, i int) *string {
	switch i {
	case reqJobID:
		return &req.JobId
	case reqRepoURL:
		return &req.RepoUrl
	case reqBranch:
		return &req.Branch
	case reqDockerfilePath:
		return &req.DockerfilePath
	case reqContextDir:
		return &req.ContextDir
	case reqImageName:
		return &req.ImageName
	default: // reqGithubToken
		return &req.GithubToken
	}
}

// jsonReader reads the JSON subset decodeRequestFast accepts. Every method
// skips whitespace first and reports !ok where the input leaves that
// subset.
type jsonReader struct {
	b   []byte
	i   int
	buf []byte // unescaped string contents, reused
}

func (d *jsonReader) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// consume skips whitespace and then c, if c is next.
func (d *jsonReader) consume(c byte) bool {
	d.space()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// str reads a JSON string. The result aliases the body or d.buf and is
// valid until the next call.
func (d *jsonReader) str() ([]byte, bool) {
	if !d.consume('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.b) {
		switch c := d.b[d.i]; {
		case c == '"':
			d.i++
			return d.b[start : d.i-1], true
		case c == '\\':
			return d.escaped(start)
		case c < 0x20:
			return nil, false
		default:
			d.i++
		}
	}
	return nil, false
}

// escaped finishes a string that started at start and has an escape at
// d.i.
func (d *jsonReader) escaped(start int) ([]byte, bool) {
	out := append(d.buf[:0], d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			d.buf = out
			return out, true
		case c < 0x20:
			return nil, false
		case c != '\\':
			out = append(out, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.b) {
			return nil, false
		}
		e := d.b[d.i+1]
		d.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok || utf16.IsSurrogate(r) {
				return nil, false
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, false
		}
	}
	return nil, false
}

// hex4 reads the four hex digits of a \u escape.
func (d *jsonReader) hex4() (rune, bool) {
	if d.i+4 > len(d.b) {
		return 0, false
	}
	var r rune
	for _, c := range d.b[d.i : d.i+4] {
		var v byte
		switch {
		case '0' <= c && c <= '9':
			v = c - '0'
		case 'a' <= c && c <= 'f':
			v = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	d.i += 4
	return r, true
}

// uint32 reads a plain decimal integer within uint32.
func (d *jsonReader) uint32() (uint32, bool) {
	d.space()
	start := d.i
	var v uint64
	for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
		v = v*10 + uint64(d.b[d.i]-'0')
		d.i++
		if v > math.MaxUint32 {
			return 0, false
		}
	}
	n := d.i - start
	if n == 0 || (n > 1 && d.b[start] == '0') {
		return 0, false
	}
	if d.i < len(d.b) {
		switch d.b[d.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	return uint32(v), true
}

// labels reads a JSON object of strings.
func (d *jsonReader) labels() (map[string]string, bool) {
	if !d.consume('{') {
		return nil, false
	}
	m := map[string]string{}
	if d.consume('}') {
		return m, true
	}
	for {
		k, ok := d.str()
		if !ok {
			return nil, false
		}
		key := string(k)
		if _, dup := m[key]; dup || !d.consume(':') {
			return nil, false
		}
		v, ok := d.str()
		if !ok {
			return nil, false
		}
		m[key] = string(v)
		if d.consume(',') {
			continue
		}
		if d.consume('}') {
			return m, true
		}
		return nil, false
	}
}
