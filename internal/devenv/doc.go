// Package devenv runs the loopback stand-ins for the outside world that the
// demo and the end-to-end tests need: a git smart-HTTP server that demands
// a token (git http-backend behind net/http/cgi) and an OCI registry
// (go-containerregistry's pkg/registry). Both listen on 127.0.0.1 only.
// ImportBaseImage fills the Docker engine with the offline base image
// (scripts/import-base-image) that builds with RUN steps start FROM.
//
// Files: gitserver.go (the git server), registry.go (the registry),
// baseimage.go (the base image).
package devenv
