package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/blacktree/blacktree/hub"
	"github.com/blacktree/blacktree/internal/auth"
	"github.com/blacktree/blacktree/internal/rabbit"
)

// minDispatchKeyLen bounds a --dispatch-key-file's key from below.
const minDispatchKeyLen = 16

// deployment returns the hub's deployment id, from the broker's address
// and virtual host (never its credentials) and the queue names, and the
// key that signs dispatch tickets: the --dispatch-key-file's, or else one
// derived from the broker URL, password included, and the queues. Hubs
// that share a broker URL and queues so agree on both without setup; the
// key never leaves the hub (docs/SECURITY.md#identity).
//
// --amqp-url may list the nodes of a cluster (rabbit.SplitURLs). Each hub
// usually lists its own node first, so both values are derived from the
// list sorted, never its order: the id from the sorted set of hosts and
// the vhost, the key from the sorted URLs. Every hub of a deployment must
// list the same nodes, in any order (docs/design/rabbitmq-cluster.md).
// With a single URL both are what they were before lists existed, so
// upgraded and older hubs of one deployment still agree.
func deployment(o *options) (id string, key []byte, err error) {
	broker, canonical, err := brokerIdentity(o.amqpURL)
	if err != nil {
		return "", nil, fmt.Errorf("--amqp-url: %w", err)
	}
	id = hub.DeploymentID(broker, o.executeQueue, o.statusQueue)
	if o.dispatchKeyFile != "" {
		b, err := os.ReadFile(o.dispatchKeyFile)
		if err != nil {
			return "", nil, fmt.Errorf("--dispatch-key-file: %w", err)
		}
		k := strings.TrimSpace(string(b))
		if len(k) < minDispatchKeyLen {
			return "", nil, errors.New("--dispatch-key-file: the key must be at least 16 characters")
		}
		return id, []byte(k), nil
	}
	sum := sha256.Sum256([]byte("blacktree dispatch key\x00" + canonical + "\x00" + o.executeQueue + "\x00" + o.statusQueue))
	return id, sum[:], nil
}

// brokerIdentity returns, for an --amqp-url list, the broker's address
// without credentials (the sorted, distinct hosts, then the vhost's path)
// and the canonical list (the URLs sorted, comma-joined, passwords
// included). Both are the same for any order of the list; for one URL
// they are its host+path and the URL itself.
func brokerIdentity(list string) (address, canonical string, err error) {
	urls, err := rabbit.SplitURLs(list)
	if err != nil {
		return "", "", err
	}
	slices.Sort(urls)
	hosts := make([]string, 0, len(urls))
	path := ""
	for i, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			return "", "", fmt.Errorf("invalid URL %s", rabbit.MaskURL(raw))
		}
		if i == 0 {
			path = u.Path // every URL names the same vhost (SplitURLs)
		}
		hosts = append(hosts, u.Host)
	}
	slices.Sort(hosts)
	hosts = slices.Compact(hosts)
	return strings.Join(hosts, ",") + path, strings.Join(urls, ","), nil
}

// credentialKey names the credential a worker stream was opened with, the
// same way on every hub that reads the same token file or trusts the same
// CA: a token by its name, or its fingerprint when its line has none; a
// certificate by its name.
func credentialKey(id auth.Identity) string {
	if id.Name != "" {
		return id.Kind + ":" + id.Name
	}
	return id.Kind + ":" + id.Fingerprint
}
