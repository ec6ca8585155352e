package devenv

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Registry is an in-memory OCI registry on 127.0.0.1. Docker treats
// 127.0.0.0/8 registries as insecure by default, so it pushes to it over
// plain HTTP with no daemon configuration.
type Registry struct {
	// Host is host:port, the prefix images are pushed under.
	Host string

	srv  *http.Server
	done chan struct{}
}

// StartRegistry starts an empty registry.
func StartRegistry() (*Registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("registry listen: %w", err)
	}
	r := &Registry{Host: ln.Addr().String(), done: make(chan struct{})}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(ln) // http.ErrServerClosed on Close
	}()
	return r, nil
}

// ManifestURL is where the manifest of repo:ref can be fetched.
func (r *Registry) ManifestURL(repo, ref string) string {
	return fmt.Sprintf("http://%s/v2/%s/manifests/%s", r.Host, repo, ref)
}

// Close stops the registry and waits for it.
func (r *Registry) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := r.srv.Shutdown(ctx)
	<-r.done
	return err
}
