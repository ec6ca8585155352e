// Package protoredact hides the values of fields marked
// `[debug_redact = true]` in .proto files (the job's githubToken) whenever a
// message is rendered for people: fmt verbs, log lines, debug JSON.
//
// protobuf-go's generated String() does not honour debug_redact, so the
// messages that carry secrets implement fmt.Formatter (see
// gen/blacktree/v1/format.go) through this package, and logging code uses
// JSON / Text below instead of protojson / prototext directly.
package protoredact

import (
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// Placeholder replaces a redacted value.
const Placeholder = "[REDACTED]"

// Clone returns a deep copy of m with every non-empty debug_redact field
// replaced by Placeholder (strings, bytes) or cleared (other kinds). m is not
// modified.
func Clone(m proto.Message) proto.Message {
	if m == nil {
		return nil
	}
	c := proto.Clone(m)
	redact(c.ProtoReflect())
	return c
}

func redact(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDebugRedact() {
			switch {
			case fd.IsList() || fd.IsMap():
				m.Clear(fd)
			case fd.Kind() == protoreflect.StringKind:
				m.Set(fd, protoreflect.ValueOfString(Placeholder))
			case fd.Kind() == protoreflect.BytesKind:
				m.Set(fd, protoreflect.ValueOfBytes([]byte(Placeholder)))
			default:
				m.Clear(fd)
			}
			return true
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				redact(l.Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				redact(mv.Message())
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			redact(v.Message())
		}
		return true
	})
}

// Text renders m in compact text form with secrets redacted.
func Text(m proto.Message) string {
	return prototext.MarshalOptions{}.Format(Clone(m))
}

// JSON renders m as protojson with secrets redacted, for logs and admin
// answers. It never fails: an encoding error yields an error marker.
func JSON(m proto.Message) string {
	b, err := protojson.Marshal(Clone(m))
	if err != nil {
		return `{"error":"unencodable message"}`
	}
	return string(b)
}
