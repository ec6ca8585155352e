package tlsutil

import "crypto/x509"

// WorkerRoleURI is the URI SAN that makes a client certificate a worker's
// identity (docs/SECURITY.md#identity). A certificate without it (an
// operator's, btctl's) still passes the mTLS handshake, but a worker that
// presents only such a certificate is refused: it is not a worker.
const WorkerRoleURI = "blacktree:role:worker"

// HasWorkerRole reports whether c carries WorkerRoleURI.
func HasWorkerRole(c *x509.Certificate) bool {
	for _, u := range c.URIs {
		if u.String() == WorkerRoleURI {
			return true
		}
	}
	return false
}
