package workeragent

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/protover"
)

// ErrProtocolRefused wraps the hub's refusal of the worker's protocol
// version (its message names both versions). The connection loop then
// waits Config.BackoffMax before the next attempt instead of the usual
// growing delay, so a worker too old or too new for its hubs does not
// hammer them; a worker that never registered still gives up after
// Config.InitialConnectTimeout (ErrNoHub).
var ErrProtocolRefused = errors.New("hub refused the worker protocol version")

// workerFeatures are the optional behaviours this agent announces in
// Register.features.
var workerFeatures = []string{protover.FeatureDrainReject}

// announceProtocol sets reg's protocol version and features, unless the
// agent speaks as a worker from before the handshake.
func (a *Agent) announceProtocol(reg *blacktreev1.Register) {
	if a.cfg.UnnumberedProtocol {
		return
	}
	reg.ProtocolVersion = a.cfg.ProtocolVersion
	reg.Features = workerFeatures
}

// registerErr is recvErr for the answer to Register: a FailedPrecondition
// from the hub is its refusal of the protocol version.
func registerErr(err error) error {
	if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition {
		return fmt.Errorf("%w: %s", ErrProtocolRefused, st.Message())
	}
	return recvErr(err)
}
