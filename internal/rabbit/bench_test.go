package rabbit

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blacktree/blacktree/internal/broker"
)

// BenchmarkPublishParallel measures confirmed publishes from many goroutines
// (deferred confirms pipeline on one channel).
func BenchmarkPublishParallel(b *testing.B) {
	e := newEnv(b, nil)
	c := e.start(b)
	ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
	defer cancel()
	body := []byte(`{"jobId":"bench","success":true,"logs":"","imageUrl":"","error":""}`)
	var n atomic.Int64
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprint(n.Add(1))
			if err := c.Publish(ctx, broker.Message{Body: body, MessageID: id}); err != nil {
				b.Errorf("Publish() = %v", err)
				return
			}
		}
	})
}
