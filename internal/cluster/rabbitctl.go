package cluster

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// CloseConnections closes, server-side, every connection of the local
// RabbitMQ node whose client-provided connection_name is name, as a broker
// failure would. rabbitmqctl's JSON output prints pids in a form
// close_connection does not accept, so connections are matched by peer port
// across two listings. It fails when no connection has that name or not all
// of them could be closed.
func CloseConnections(name string) error {
	out, err := exec.Command("rabbitmqctl", "-q", "list_connections", "peer_port", "client_properties", "--formatter", "json").Output()
	if err != nil {
		return fmt.Errorf("rabbitmqctl list_connections: %w (needs rabbitmqctl on PATH with access to the local node)", err)
	}
	var conns []struct {
		PeerPort int                 `json:"peer_port"`
		Props    [][]json.RawMessage `json:"client_properties"`
	}
	if err := json.Unmarshal(out, &conns); err != nil {
		return fmt.Errorf("parse rabbitmqctl output: %w\n%s", err, out)
	}
	ports := map[string]bool{}
	for _, c := range conns {
		for _, p := range c.Props {
			var key, val string
			if len(p) == 3 && json.Unmarshal(p[0], &key) == nil && key == "connection_name" &&
				json.Unmarshal(p[2], &val) == nil && val == name {
				ports[strconv.Itoa(c.PeerPort)] = true
			}
		}
	}
	if len(ports) == 0 {
		return fmt.Errorf("close connections %q: no such connection", name)
	}
	out, err = exec.Command("rabbitmqctl", "-s", "list_connections", "peer_port", "pid").Output()
	if err != nil {
		return fmt.Errorf("rabbitmqctl list_connections: %w", err)
	}
	closed := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		port, pid, ok := strings.Cut(line, "\t")
		if !ok || !ports[port] {
			continue
		}
		if out, err := exec.Command("rabbitmqctl", "-q", "close_connection", pid, "test: simulated broker failure").CombinedOutput(); err != nil {
			return fmt.Errorf("rabbitmqctl close_connection %s: %w\n%s", pid, err, out)
		}
		closed++
	}
	if closed != len(ports) {
		return fmt.Errorf("close connections %q: closed %d of %d", name, closed, len(ports))
	}
	return nil
}
