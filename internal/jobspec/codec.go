package jobspec

import (
	"encoding/json"
	"fmt"
	"sort"
	"unicode/utf8"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// MaxRequestBytes bounds an execute.queue message body. Real requests are a
// few hundred bytes; anything near this limit is hostile or broken.
const MaxRequestBytes = 64 << 10

// DecodeError says why a message body is not a JobRequest. JobID is set
// when the body was readable enough to name the job, in which case the
// hub answers with a failed JobResponse; otherwise it dead-letters the
// message.
type DecodeError struct {
	JobID  string
	Reason string
}

func (e *DecodeError) Error() string { return "invalid job request: " + e.Reason }

// Decoded reports what DecodeRequest tolerated.
type Decoded struct {
	// UnknownFields lists top-level JSON keys that JobRequest does not have,
	// sorted. They are ignored (forward compatibility) and reported.
	UnknownFields []string
}

// requestFields holds both names of every JobRequest field: its JSON name
// and its proto name.
var requestFields = fieldNames((&blacktreev1.JobRequest{}).ProtoReflect().Descriptor())

func fieldNames(md protoreflect.MessageDescriptor) map[string]bool {
	names := map[string]bool{}
	for i := 0; i < md.Fields().Len(); i++ {
		fd := md.Fields().Get(i)
		names[fd.JSONName()] = true
		names[string(fd.Name())] = true
	}
	return names
}

// DecodeRequest parses an execute.queue body. Unknown fields are tolerated
// and reported in Decoded. It does not validate the values: see Validate.
func DecodeRequest(body []byte) (*blacktreev1.JobRequest, Decoded, error) {
	var d Decoded
	if len(body) > MaxRequestBytes {
		return nil, d, &DecodeError{
			JobID:  peekJobID(body),
			Reason: fmt.Sprintf("message is %d bytes, limit is %d", len(body), MaxRequestBytes),
		}
	}
	if !utf8.Valid(body) {
		return nil, d, &DecodeError{Reason: "body is not valid UTF-8"}
	}
	if req, ok := decodeStrict(body); ok {
		return req, d, nil
	}
	return decodeTolerant(body)
}

// decodeStrict decodes a body that holds only JobRequest fields, each once,
// with the right JSON types: the shape control planes send, in one pass of
// protojson. It reports !ok for anything else, which decodeTolerant then
// decodes or explains; where decodeStrict succeeds, decodeTolerant gives
// the same message and no unknown fields (TestDecodeStrictMatchesTolerant).
func decodeStrict(body []byte) (*blacktreev1.JobRequest, bool) {
	req := &blacktreev1.JobRequest{}
	if protojson.Unmarshal(body, req) != nil {
		return nil, false
	}
	return req, true
}

// decodeTolerant is DecodeRequest for any body that is valid UTF-8 and
// within MaxRequestBytes: it skips and reports unknown keys, and names the
// fields whose JSON type is wrong.
func decodeTolerant(body []byte) (*blacktreev1.JobRequest, Decoded, error) {
	var d Decoded
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, d, &DecodeError{
			JobID:  peekJobID(body),
			Reason: "body is not a JSON object: " + jsonReason(err),
		}
	}
	for k := range top {
		if !requestFields[k] {
			d.UnknownFields = append(d.UnknownFields, k)
		}
	}
	sort.Strings(d.UnknownFields)
	req := &blacktreev1.JobRequest{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, req); err != nil {
		// protojson errors quote the offending value, which could be the
		// token: report only which field is wrong.
		return nil, d, &DecodeError{
			JobID:  peekJobID(body),
			Reason: "fields have the wrong JSON types" + wrongTypedFields(top),
		}
	}
	return req, d, nil
}

// peekJobID reads just "jobId" from a body that failed to decode, so the
// failure can still be reported on status.queue.
func peekJobID(body []byte) string {
	var p struct {
		JobID string `json:"jobId"`
	}
	if json.Unmarshal(body, &p) != nil {
		var alt struct {
			JobID string `json:"job_id"`
		}
		if json.Unmarshal(body, &alt) != nil || ValidJobID(alt.JobID) != nil {
			return ""
		}
		return alt.JobID
	}
	if ValidJobID(p.JobID) != nil {
		return ""
	}
	return p.JobID
}

// wrongTypedFields names the known fields whose JSON type does not match.
func wrongTypedFields(top map[string]json.RawMessage) string {
	var bad []string
	md := (&blacktreev1.JobRequest{}).ProtoReflect().Descriptor()
	for i := 0; i < md.Fields().Len(); i++ {
		fd := md.Fields().Get(i)
		raw, ok := top[fd.JSONName()]
		if !ok {
			raw, ok = top[string(fd.Name())]
		}
		if !ok {
			continue
		}
		probe := &blacktreev1.JobRequest{}
		one, _ := json.Marshal(map[string]json.RawMessage{fd.JSONName(): raw})
		if protojson.Unmarshal(one, probe) != nil {
			bad = append(bad, fd.JSONName())
		}
	}
	if len(bad) == 0 {
		return ""
	}
	sort.Strings(bad)
	return fmt.Sprintf(": %v", bad)
}

func jsonReason(err error) string {
	switch e := err.(type) {
	case *json.SyntaxError:
		return fmt.Sprintf("syntax error at byte %d", e.Offset)
	case *json.UnmarshalTypeError:
		return "top level is " + e.Value + ", want object"
	default:
		return "malformed JSON"
	}
}

// EncodeRequest renders a JobRequest as the execute.queue JSON.
func EncodeRequest(req *blacktreev1.JobRequest) ([]byte, error) {
	b, err := protojson.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode job request: %w", err)
	}
	return b, nil
}

// EncodeResponse renders a JobResponse as the status.queue JSON. Scalar
// fields are always present (so jobId, success, logs, imageUrl and error are
// there even when empty); unset timestamps are left out.
func EncodeResponse(resp *blacktreev1.JobResponse) ([]byte, error) {
	b, err := protojson.MarshalOptions{EmitDefaultValues: true}.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("encode job response %s: %w", resp.GetJobId(), err)
	}
	return b, nil
}

// DecodeResponse parses a status.queue body (for clients and tests).
func DecodeResponse(body []byte) (*blacktreev1.JobResponse, error) {
	resp := &blacktreev1.JobResponse{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, resp); err != nil {
		return nil, fmt.Errorf("decode job response: %w", err)
	}
	return resp, nil
}

// Failed builds the failed JobResponse for a job that never produced one of
// its own (invalid request, lost worker).
func Failed(jobID string, stage blacktreev1.JobStage, err error) *blacktreev1.JobResponse {
	return &blacktreev1.JobResponse{
		JobId:       jobID,
		Success:     false,
		Error:       err.Error(),
		FailedStage: stage,
	}
}

// LogFields are the hclog key/value pairs that describe a request in a log
// line: job_id, then LogFieldsWithoutJobID. They never include the token.
func LogFields(req *blacktreev1.JobRequest) []any {
	return append([]any{"job_id", req.GetJobId()}, LogFieldsWithoutJobID(req)...)
}

// LogFieldsWithoutJobID is LogFields for a logger that already carries
// job_id.
func LogFieldsWithoutJobID(req *blacktreev1.JobRequest) []any {
	return []any{
		"repo_url", req.GetRepoUrl(),
		"branch", req.GetBranch(),
		"image_name", req.GetImageName(),
	}
}
