// Package jobspec turns queue messages into JobRequests and JobResponses
// into queue messages, and decides whether a JobRequest is safe to run.
//
// It is shared by the hub (which validates before dispatch, docs/protocol.md#invalid-requests)
// and the worker agent (which validates again before touching anything).
// Nothing here ever puts a githubToken into an error or a log field.
//
// Files: codec.go (the queue codecs: a request is decoded by strict
// protojson in one pass; a body it refuses goes through encoding/json,
// which finds unknown keys and wrong types, and tolerant protojson;
// protojson encodes), labels.go (the worker-label match), cachekey.go (the
// build key for cache-aware placement), pushscope.go (the image-name
// prefixes pushes may go under, shared by the hub's check and the docker
// executor's), validate.go, addr.go (the address ranges a job's git
// traffic must not reach), bound.go (the bounds every JobResponse field
// gets on the worker and again on the hub, and TruncateMiddle, the
// head-and-tail cut with its "… N bytes truncated …" marker), stage.go
// (a JobStage's name in messages and pages).
package jobspec
