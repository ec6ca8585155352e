// Package jobspec turns queue messages into JobRequests and JobResponses
// into queue messages, and decides whether a JobRequest is safe to run.
//
// It is shared by the hub (which validates before dispatch, docs/protocol.md#invalid-requests)
// and the worker agent (which validates again before touching anything).
// Nothing here ever puts a githubToken into an error or a log field.
//
// Files: codec.go (DecodeRequest's general path, the other codecs),
// decode.go (the one-pass JobRequest decoder DecodeRequest tries first),
// cachekey.go (the build key for cache-aware placement), validate.go.
// The hand-written decoder is checked against protojson by differential
// table and fuzz tests and falls back to it for anything it does not model.
// JobResponses are encoded by protojson.
package jobspec
