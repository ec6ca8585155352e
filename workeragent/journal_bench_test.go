package workeragent

import (
	"fmt"
	"io"
	"testing"
	"time"
)

// BenchmarkJournalJob is what the journal costs one job on the dispatch
// path: recording it, then its end.
func BenchmarkJournalJob(b *testing.B) {
	j, _ := startedJournal(b, b.TempDir(), 8, io.Discard)
	ids := make([]string, 1024)
	for i := range ids {
		ids[i] = fmt.Sprintf("bench-job-%06d", i)
	}
	at := time.Now()
	b.ResetTimer()
	for i := range b.N {
		id := ids[i%len(ids)]
		if err := j.started(id, "0123456789abcdef.0123456789abcdef0123456789abcdef0123456789abcdef", at); err != nil {
			b.Fatal(err)
		}
		j.done(id)
	}
}
