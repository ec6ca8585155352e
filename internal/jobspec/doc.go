// Package jobspec turns queue messages into JobRequests and JobResponses
// into queue messages, and decides whether a JobRequest is safe to run.
//
// It is shared by the hub (which validates before dispatch, DESIGN §5.4)
// and the worker agent (which validates again before touching anything).
// Nothing here ever puts a githubToken into an error or a log field.
//
// Files: codec.go (DecodeRequest's general path, the other codecs),
// decode.go (the one-pass JobRequest decoder DecodeRequest tries first),
// encode.go (the hand-written JobResponse encoder), validate.go.
// The two hand-written codecs are checked against protojson by
// differential table and fuzz tests and fall back to it for anything
// they do not model.
package jobspec
