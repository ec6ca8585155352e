// Package cluster drives real Blacktree processes the way an operator and a
// control plane do: it builds the binaries, starts hubs and workers with
// the documented flags, publishes JobRequests (and cancels, cancel.go) to
// RabbitMQ and keeps a ledger of the JobResponses on the status queue. The demo
// (cmd/blacktree-demo) and the end-to-end suite (e2e/) are built on it.
//
// The control-plane side talks to RabbitMQ with amqp091-go directly: it
// plays an outside system, so it deliberately shares no code with the
// hub's adapter (internal/rabbit).
//
// RabbitMQ under test: the machine's shared broker (SharedBrokerURL), a
// private node of one's own (broker.go), or a cluster of several started
// by scripts/rabbitmq-cluster (rabbitcluster.go). On a cluster,
// NewClusterControlPlane (failover.go) makes a control plane whose one
// failover goroutine moves it to the next node when its connection dies;
// lock order there is connMu, then mu (statuses), then the failover's own.
package cluster
