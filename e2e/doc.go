// Package e2e is the end-to-end suite: it drives the built blacktree-hub
// and blacktree-worker binaries only through RabbitMQ and their documented
// flags, as a control plane and an operator would, against a real RabbitMQ,
// a real Docker engine, a loopback git server and a loopback registry.
//
// Each scenario records its measured figure (detection time, jobs lost) in
// a report printed at the end of the run.
package e2e
