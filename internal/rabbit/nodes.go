package rabbit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// SplitURLs splits Config.URL (and the hub's --amqp-url): one AMQP URL, or
// several separated by commas, the nodes of one RabbitMQ cluster. Spaces
// around each URL are trimmed; a comma inside a password must be written
// %2C. Every URL must parse, appear once and name the same virtual host,
// since a vhost and its queues are cluster-wide: URLs naming different
// vhosts are different deployments. Errors carry masked URLs only.
func SplitURLs(list string) ([]string, error) {
	var urls []string
	seen := map[string]bool{}
	vhost := ""
	for i, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			return nil, errors.New("rabbit: empty URL in the list")
		}
		u, err := amqp.ParseURI(raw)
		if err != nil {
			// The parse error may quote the URL; do not echo it.
			return nil, fmt.Errorf("rabbit: invalid URL %s", MaskURL(raw))
		}
		if seen[raw] {
			return nil, fmt.Errorf("rabbit: URL %s listed twice", MaskURL(raw))
		}
		seen[raw] = true
		if i == 0 {
			vhost = u.Vhost
		} else if u.Vhost != vhost {
			return nil, fmt.Errorf("rabbit: URL %s names vhost %q, the first names %q: the URLs must be nodes of one cluster and vhost", MaskURL(raw), u.Vhost, vhost)
		}
		urls = append(urls, raw)
	}
	return urls, nil
}

// nodes is the list of broker URLs a Client dials, in turn. Each
// connection role ("consume", "publish", "declare") remembers the node it
// last reached; its next dial starts at the node after it, so a node that
// has just failed is tried last and the first dial starts at the first URL.
// A pass that reaches no node is one failed attempt: the caller's backoff
// then runs before the next pass.
type nodes struct {
	urls []string

	mu   sync.Mutex     // guards last
	last map[string]int // role -> index of the node last reached
}

func newNodes(urls []string) *nodes {
	return &nodes{
		urls: urls,
		last: map[string]int{},
	}
}

// order returns the indexes of the URLs in the order role tries them.
func (n *nodes) order(role string) []int {
	n.mu.Lock()
	start := 0
	if last, ok := n.last[role]; ok {
		start = last + 1
	}
	n.mu.Unlock()
	idx := make([]int, len(n.urls))
	for k := range idx {
		idx[k] = (start + k) % len(n.urls)
	}
	return idx
}

func (n *nodes) reached(role string, i int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.last[role] = i
}

// dial opens one connection for role on the first node that answers,
// trying each URL once in nodes order. With several URLs, the node reached
// is logged; the error of a pass that reached none lists every node's.
func (c *Client) dial(ctx context.Context, role string) (amqpConn, error) {
	var errs []error
	for _, i := range c.nodes.order(role) {
		raw := c.nodes.urls[i]
		conn, err := c.dialURL(ctx, role, raw)
		if err == nil {
			c.nodes.reached(role, i)
			if len(c.nodes.urls) > 1 {
				c.log.Info("connected to node", "role", role, "url", MaskURL(raw))
			}
			return conn, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 1 {
		return amqpConn{}, errs[0]
	}
	return amqpConn{}, fmt.Errorf("no node of %d reachable: %w", len(c.nodes.urls), errors.Join(errs...))
}

// maskURLList masks every URL of a comma-separated list (MaskURL).
func maskURLList(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		parts[i] = maskOneURL(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// renewAfterNack closes the channel of s, on which the broker has just
// nacked a publish to a quorum queue, so that the publish loop makes a new
// session (the next node first) and the caller's retry goes out on it. A
// channel that first published to a quorum queue while the queue had no
// leader (its node had just died) has its publishes nacked for seconds
// after a new leader is elected (RabbitMQ 3.10, measured by the e2e
// cluster test); a new channel publishes at once. Publishes still
// unconfirmed on s are published again (at-least-once). Classic queues
// keep their channel: a nack there is not about a leader.
func (c *Client) renewAfterNack(s *publishSession) {
	if c.cfg.QueueType != QueueTypeQuorum {
		return
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.ch.IsClosed() {
		return // another nacked Publish got here first
	}
	c.pub.log.Warn("broker nacked a publish; publishing on a new channel")
	_ = s.conn.bounded(c.cfg.RPCTimeout, "close the nacked channel", s.ch.Close)
}
