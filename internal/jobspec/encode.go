package jobspec

import (
	"encoding/json"
	"math/bits"
	"slices"
	"unicode/utf8"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The fast JobResponse encoder. EncodeResponse runs once per job on the
// hub's hot path, and protojson (reflection over every field, time.Format
// for timestamps) was 10–17% of the hub's CPU. appendResponse writes the
// same JSON as protojson.MarshalOptions{EmitDefaultValues: true} (minus
// protojson's deliberately random whitespace) straight from the struct
// fields:
//
//   - fields in declaration (= field number) order, under their protojson
//     JSON names, every scalar present even when zero;
//   - failed_stage as the string protojson writes for that value;
//   - timestamps as RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits,
//     left out when nil;
//   - strings escaped exactly like protojson: `\"`, `\\`, `\b`, `\f`, `\n`,
//     `\r`, `\t`, other control characters as `\u00xx`, everything else
//     (including `<`, `>`, `&`, U+2028, U+2029 and DEL) verbatim.
//
// Whenever protojson would fail (invalid UTF-8, timestamp out of range) or
// the input is anything the encoder does not model (nil message, unknown
// fields, an enum number with no name), appendResponse reports !ok and
// EncodeResponse uses protojson, so errors and odd cases are protojson's
// own. If JobResponse's descriptor ever stops matching responseLayout (a
// field added, renumbered or retyped), the fast path switches itself off
// and every call goes to protojson; TestResponseLayoutMatchesDescriptor
// fails so that someone updates this file.

// responseLayout is the JobResponse field list appendResponse is written
// against, in declaration order. Each entry's index is the index of the
// key in responseCodec.keys.
var responseLayout = [...]struct {
	number protoreflect.FieldNumber
	kind   protoreflect.Kind
}{
	{1, protoreflect.StringKind},   // job_id
	{2, protoreflect.BoolKind},     // success
	{3, protoreflect.StringKind},   // logs
	{4, protoreflect.StringKind},   // image_url
	{5, protoreflect.StringKind},   // error
	{6, protoreflect.StringKind},   // worker_id
	{7, protoreflect.StringKind},   // image_digest
	{8, protoreflect.EnumKind},     // failed_stage
	{9, protoreflect.MessageKind},  // started_at (google.protobuf.Timestamp)
	{10, protoreflect.MessageKind}, // finished_at (google.protobuf.Timestamp)
}

const (
	fieldJobID = iota
	fieldSuccess
	fieldLogs
	fieldImageURL
	fieldError
	fieldWorkerID
	fieldImageDigest
	fieldFailedStage
	fieldStartedAt
	fieldFinishedAt
)

// responseCodec holds what appendResponse precomputes from the descriptor.
type responseCodec struct {
	ok bool // descriptor matches responseLayout; false means always fall back
	// keys[i] is `{"jobId":` for the first field and `,"name":` for the
	// others.
	keys [len(responseLayout)]string
	// stages[n] is the JSON protojson writes for JobStage n (quotes
	// included), "" where n has no value.
	stages []string
	// fixed is the byte count of everything but string contents.
	fixed int
}

var fastResponse = newResponseCodec()

func newResponseCodec() responseCodec {
	var c responseCodec
	md := (&blacktreev1.JobResponse{}).ProtoReflect().Descriptor()
	fds := md.Fields()
	if fds.Len() != len(responseLayout) || md.Oneofs().Len() != 0 || md.Extensions().Len() != 0 {
		return c
	}
	for i, want := range responseLayout {
		fd := fds.Get(i)
		if fd.Number() != want.number || fd.Kind() != want.kind || fd.Cardinality() != protoreflect.Optional ||
			fd.IsList() || fd.IsMap() || !plainName(fd.JSONName()) {
			return c
		}
		if want.kind == protoreflect.MessageKind && fd.Message().FullName() != "google.protobuf.Timestamp" {
			return c
		}
		if want.kind != protoreflect.MessageKind && fd.HasPresence() {
			return c // proto3 `optional`: protojson would omit it when unset
		}
		sep := ","
		if i == 0 {
			sep = "{"
		}
		c.keys[i] = sep + `"` + fd.JSONName() + `":`
		c.fixed += len(c.keys[i])
	}
	stages, ok := stageJSON(fds.Get(fieldFailedStage))
	if !ok {
		return c
	}
	c.stages = stages
	longest := 0
	for _, s := range stages {
		longest = max(longest, len(s))
	}
	// 5 for "false", 2 quotes for each of the 6 strings, a quoted
	// timestamp is at most 32 bytes, and the closing brace.
	c.fixed += 5 + 6*2 + longest + 2*32 + 1
	c.ok = true
	return c
}

// stageJSON asks protojson itself how it writes each value of the enum
// field fd, so that the fast path follows it (enum value json_name options
// included). Values outside [0, 256) are left to protojson.
func stageJSON(fd protoreflect.FieldDescriptor) ([]string, bool) {
	vals := fd.Enum().Values()
	var out []string
	for i := 0; i < vals.Len(); i++ {
		n := vals.Get(i).Number()
		if n < 0 || n >= 256 {
			continue
		}
		b, err := protojson.MarshalOptions{EmitDefaultValues: true}.Marshal(&blacktreev1.JobResponse{FailedStage: blacktreev1.JobStage(n)})
		if err != nil {
			return nil, false
		}
		var top map[string]json.RawMessage
		var name string
		if json.Unmarshal(b, &top) != nil || json.Unmarshal(top[fd.JSONName()], &name) != nil {
			return nil, false // missing, or not a JSON string
		}
		enc, ok := appendJSONString(nil, name)
		if !ok {
			return nil, false
		}
		for len(out) <= int(n) {
			out = append(out, "")
		}
		out[n] = string(enc)
	}
	return out, true
}

// plainName reports whether s can be written as a JSON key without
// escaping.
func plainName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// appendResponse appends the JSON form of r to b. ok is false when r needs
// protojson (see above); b's contents are then unspecified.
func appendResponse(b []byte, r *blacktreev1.JobResponse) (_ []byte, ok bool) {
	c := &fastResponse
	if !c.ok || r == nil || len(r.ProtoReflect().GetUnknown()) != 0 {
		return b, false
	}
	stage := int(r.FailedStage)
	if stage < 0 || stage >= len(c.stages) || c.stages[stage] == "" {
		return b, false
	}
	b = slices.Grow(b, c.fixed+len(r.JobId)+len(r.Logs)+len(r.ImageUrl)+len(r.Error)+len(r.WorkerId)+len(r.ImageDigest))

	b = append(b, c.keys[fieldJobID]...)
	if b, ok = appendJSONString(b, r.JobId); !ok {
		return b, false
	}
	b = append(b, c.keys[fieldSuccess]...)
	if r.Success {
		b = append(b, "true"...)
	} else {
		b = append(b, "false"...)
	}
	strs := [...]struct {
		key int
		val string
	}{
		{fieldLogs, r.Logs},
		{fieldImageURL, r.ImageUrl},
		{fieldError, r.Error},
		{fieldWorkerID, r.WorkerId},
		{fieldImageDigest, r.ImageDigest},
	}
	for _, s := range strs {
		b = append(b, c.keys[s.key]...)
		if b, ok = appendJSONString(b, s.val); !ok {
			return b, false
		}
	}
	b = append(b, c.keys[fieldFailedStage]...)
	b = append(b, c.stages[stage]...)
	if r.StartedAt != nil {
		b = append(b, c.keys[fieldStartedAt]...)
		if b, ok = appendTimestamp(b, r.StartedAt); !ok {
			return b, false
		}
	}
	if r.FinishedAt != nil {
		b = append(b, c.keys[fieldFinishedAt]...)
		if b, ok = appendTimestamp(b, r.FinishedAt); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

// jsonEscape[c] says how protojson writes ASCII byte c inside a string:
// 0 as is, 'u' as `\u00xx` (lowercase hex), any other x as `\x`.
var jsonEscape = func() (t [utf8.RuneSelf]byte) {
	for c := 0; c < ' '; c++ {
		t[c] = 'u'
	}
	t['\b'], t['\f'], t['\n'], t['\r'], t['\t'] = 'b', 'f', 'n', 'r', 't'
	t['"'], t['\\'] = '"', '\\'
	return t
}()

// appendJSONString appends s as a JSON string the way protojson does. ok
// is false when s is not valid UTF-8 (protojson's error).
func appendJSONString(b []byte, s string) (_ []byte, ok bool) {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if i += plainRun(s[i:]); i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			switch esc := jsonEscape[c]; esc {
			case 0:
			case 'u':
				b = append(b, s[start:i]...)
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
				start = i + 1
			default:
				b = append(b, s[start:i]...)
				b = append(b, '\\', esc)
				start = i + 1
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			return b, false
		}
		i += n
	}
	b = append(b, s[start:]...)
	return append(b, '"'), true
}

// plainRun returns how many leading bytes of s are plain ASCII (no
// control character, '"', '\\' or non-ASCII byte), looking 8 bytes at a
// time; it does not look at a final partial word. Build logs are mostly
// plain. In the SWAR expressions a byte's top bit ends up set where the
// byte of v is zero (v^c: equal to c) or below 0x20; borrows can only flag
// bytes above a flagged one, so the lowest flag is exact.
func plainRun(s string) int {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := s[i : i+8]
		v := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		quote := v ^ ('"' * ones)
		bslash := v ^ ('\\' * ones)
		bad := (v | (v-' '*ones)&^v | (quote-ones)&^quote | (bslash-ones)&^bslash) & high
		if bad != 0 {
			return i + bits.TrailingZeros64(bad)/8
		}
	}
	return i
}

// The Timestamp range protojson accepts: 0001-01-01T00:00:00Z to
// 9999-12-31T23:59:59.999999999Z.
const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300799
)

// appendTimestamp appends ts as protojson does: a quoted RFC 3339 time in
// UTC with 0, 3, 6 or 9 fractional digits (the fewest that are exact). ok
// is false when ts is out of range or has unknown fields.
func appendTimestamp(b []byte, ts *timestamppb.Timestamp) (_ []byte, ok bool) {
	secs, nanos := ts.GetSeconds(), int64(ts.GetNanos())
	if secs < minTimestampSeconds || secs > maxTimestampSeconds || nanos < 0 || nanos > 999_999_999 ||
		len(ts.ProtoReflect().GetUnknown()) != 0 {
		return b, false
	}
	days := secs / 86400
	if secs%86400 < 0 {
		days--
	}
	sod := secs - days*86400
	year, month, day := civilFromDays(days)

	// "YYYY-MM-DDThh:mm:ss[.fff[fff[fff]]]Z", quotes included.
	var buf [32]byte
	buf[0] = '"'
	put2(buf[1:], year/100)
	put2(buf[3:], year%100)
	buf[5] = '-'
	put2(buf[6:], month)
	buf[8] = '-'
	put2(buf[9:], day)
	buf[11] = 'T'
	put2(buf[12:], sod/3600)
	buf[14] = ':'
	put2(buf[15:], sod/60%60)
	buf[17] = ':'
	put2(buf[18:], sod%60)
	n := 20
	if nanos != 0 {
		digits := 9
		switch {
		case nanos%1_000_000 == 0:
			digits, nanos = 3, nanos/1_000_000
		case nanos%1_000 == 0:
			digits, nanos = 6, nanos/1_000
		}
		buf[n] = '.'
		for i := n + digits; i > n; i-- {
			buf[i] = byte('0' + nanos%10)
			nanos /= 10
		}
		n += 1 + digits
	}
	buf[n], buf[n+1] = 'Z', '"'
	return append(b, buf[:n+2]...), true
}

// civilFromDays converts days since 1970-01-01 to a proleptic Gregorian
// date (Howard Hinnant's days_from_civil inverse).
func civilFromDays(days int64) (year, month, day int64) {
	z := days + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097                                  // [0, 146096]
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // [0, 399]
	doy := doe - (365*yoe + yoe/4 - yoe/100)               // [0, 365]
	mp := (5*doy + 2) / 153                                // [0, 11], March-based
	day = doy - (153*mp+2)/5 + 1
	month = mp + 3
	if mp >= 10 {
		month = mp - 9
	}
	year = yoe + era*400
	if month <= 2 {
		year++
	}
	return year, month, day
}

// put2 writes v (0 <= v < 100) as two digits at the start of dst.
func put2(dst []byte, v int64) {
	const pairs = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"
	_ = dst[1]
	dst[0], dst[1] = pairs[2*v], pairs[2*v+1]
}
