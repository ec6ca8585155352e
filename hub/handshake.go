package hub

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/protover"
)

// The version handshake (docs/protocol.md#versions): a Register carries
// the worker's protocol version, none (0) from workers that predate the
// field, which is version 1; the hub accepts
// [Config.MinProtocolVersion, Config.MaxProtocolVersion] and answers with
// its own in Registered.

// hubFeatures are the optional behaviours this hub announces in
// Registered.features.
var hubFeatures = []string{protover.FeatureDrainRequeue, protover.FeatureJobProgress}

// setProtocolRange defaults the accepted worker protocol versions and
// checks that they form a range this build can speak.
func (c *Config) setProtocolRange() error {
	if c.MinProtocolVersion == 0 {
		c.MinProtocolVersion = protover.Oldest
	}
	if c.MaxProtocolVersion == 0 {
		c.MaxProtocolVersion = protover.Current
	}
	if c.MinProtocolVersion > c.MaxProtocolVersion || c.MaxProtocolVersion > protover.Current {
		return fmt.Errorf("hub: worker protocol versions %d to %d: want a range within 1 to %d",
			c.MinProtocolVersion, c.MaxProtocolVersion, protover.Current)
	}
	return nil
}

// checkProtocol returns the protocol version reg's worker speaks, or the
// FailedPrecondition status that refuses it, naming both versions. The
// worker backs off its reconnects to their longest delay on it
// (workeragent), so a worker too old for its hub does not hot-loop.
func (h *Hub) checkProtocol(reg *blacktreev1.Register) (uint32, error) {
	v, err := protover.Check(reg.GetProtocolVersion(), h.cfg.MinProtocolVersion, h.cfg.MaxProtocolVersion)
	if err != nil {
		h.metrics.registerRefused(refusedProtocol)
		h.log.Warn("register refused: unsupported worker protocol version", "worker_id", reg.GetWorkerId(),
			"worker_version", reg.GetVersion(), "error", err)
		return 0, status.Error(codes.FailedPrecondition, err.Error())
	}
	return v, nil
}
