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
	ports, err := connectionPorts(out, name)
	if err != nil {
		return err
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

// connectionPorts returns the peer ports of the connections named name in
// rabbitmqctl's JSON listing of peer_port and client_properties. A
// connection still in its handshake lists its properties as "none"; it has
// no name yet and is skipped.
func connectionPorts(listing []byte, name string) (map[string]bool, error) {
	var conns []struct {
		PeerPort int             `json:"peer_port"`
		Props    json.RawMessage `json:"client_properties"`
	}
	if err := json.Unmarshal(listing, &conns); err != nil {
		return nil, fmt.Errorf("parse rabbitmqctl output: %w\n%s", err, listing)
	}
	ports := map[string]bool{}
	for _, c := range conns {
		var props [][]json.RawMessage
		if json.Unmarshal(c.Props, &props) != nil {
			continue // "none": the handshake has not sent them yet
		}
		for _, p := range props {
			var key, val string
			if len(p) == 3 && json.Unmarshal(p[0], &key) == nil && key == "connection_name" &&
				json.Unmarshal(p[2], &val) == nil && val == name {
				ports[strconv.Itoa(c.PeerPort)] = true
			}
		}
	}
	return ports, nil
}

// MaxMessageSize returns the local RabbitMQ node's max_message_size.
func MaxMessageSize() (int, error) {
	out, err := exec.Command("rabbitmqctl", "-q", "eval", "application:get_env(rabbit, max_message_size).").Output()
	if err != nil {
		return 0, fmt.Errorf("rabbitmqctl eval: %w (needs rabbitmqctl on PATH with access to the local node)", err)
	}
	s := strings.TrimSpace(string(out)) // {ok,134217728}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{ok,"), "}")
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("parse max_message_size from %q: %w", out, err)
	}
	return n, nil
}

// SetMaxMessageSize sets the local RabbitMQ node's max_message_size, for
// the channels opened from then on.
func SetMaxMessageSize(n int) error {
	expr := fmt.Sprintf("application:set_env(rabbit, max_message_size, %d).", n)
	if out, err := exec.Command("rabbitmqctl", "-q", "eval", expr).CombinedOutput(); err != nil {
		return fmt.Errorf("rabbitmqctl eval %s: %w\n%s", expr, err, out)
	}
	return nil
}
