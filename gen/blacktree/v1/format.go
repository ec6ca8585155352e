// This file is hand-written, not generated: `buf generate` leaves it alone
// (buf.gen.yaml has clean: false).

package blacktreev1

import (
	"fmt"

	"github.com/blacktree/blacktree/internal/protoredact"
	"google.golang.org/protobuf/proto"
)

// The messages below carry a JobRequest, whose github_token is marked
// debug_redact. protobuf-go's generated String() ignores that option, so
// these types implement fmt.Formatter: every fmt verb (%v, %+v, %s, %q, …)
// prints them with the token replaced by [REDACTED]. Do not call String()
// on them in logs; use fmt or internal/protoredact.

// Format implements fmt.Formatter with secrets redacted.
func (x *JobRequest) Format(f fmt.State, verb rune) { formatRedacted(f, verb, x) }

// Format implements fmt.Formatter with secrets redacted.
func (x *RunJob) Format(f fmt.State, verb rune) { formatRedacted(f, verb, x) }

// Format implements fmt.Formatter with secrets redacted.
func (x *HubMessage) Format(f fmt.State, verb rune) { formatRedacted(f, verb, x) }

func formatRedacted(f fmt.State, verb rune, m proto.Message) {
	if !m.ProtoReflect().IsValid() {
		fmt.Fprint(f, "<nil>")
		return
	}
	s := protoredact.Text(m)
	if verb == 'q' {
		fmt.Fprintf(f, "%q", s)
		return
	}
	fmt.Fprint(f, s)
}
