package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/blacktree/blacktree/hub"
	"github.com/blacktree/blacktree/internal/auth"
)

// minDispatchKeyLen bounds a --dispatch-key-file's key from below.
const minDispatchKeyLen = 16

// deployment returns the hub's deployment id, from the broker's address
// and virtual host (never its credentials) and the queue names, and the
// key that signs dispatch tickets: the --dispatch-key-file's, or else one
// derived from the broker URL, password included, and the queues. Hubs
// that share a broker URL and queues so agree on both without setup; the
// key never leaves the hub (docs/SECURITY.md#identity).
func deployment(o *options) (id string, key []byte, err error) {
	u, err := url.Parse(o.amqpURL)
	if err != nil {
		return "", nil, fmt.Errorf("--amqp-url: %w", err)
	}
	id = hub.DeploymentID(u.Host+u.Path, o.executeQueue, o.statusQueue)
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
	sum := sha256.Sum256([]byte("blacktree dispatch key\x00" + o.amqpURL + "\x00" + o.executeQueue + "\x00" + o.statusQueue))
	return id, sum[:], nil
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
