package cluster

import (
	"encoding/json"
	"fmt"
	"os/exec"
)

// QueueCounts returns the ready and the delivered-but-unacknowledged
// message counts of the local RabbitMQ node's queue name, as the queue
// itself reports them (rabbitmqctl list_queues).
func QueueCounts(name string) (ready, unacked int, err error) {
	out, err := exec.Command("rabbitmqctl", "-q", "list_queues", "name", "messages_ready", "messages_unacknowledged", "--formatter", "json").Output()
	if err != nil {
		return 0, 0, fmt.Errorf("rabbitmqctl list_queues: %w (needs rabbitmqctl on PATH with access to the local node)", err)
	}
	var queues []struct {
		Name    string `json:"name"`
		Ready   int    `json:"messages_ready"`
		Unacked int    `json:"messages_unacknowledged"`
	}
	if err := json.Unmarshal(out, &queues); err != nil {
		return 0, 0, fmt.Errorf("parse rabbitmqctl output: %w\n%s", err, out)
	}
	for _, q := range queues {
		if q.Name == name {
			return q.Ready, q.Unacked, nil
		}
	}
	return 0, 0, fmt.Errorf("queue %q: not listed by rabbitmqctl", name)
}
