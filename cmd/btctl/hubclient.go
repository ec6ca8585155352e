package main

import (
	"context"
	"errors"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	blacktreev1 "github.com/blacktree/blacktree/gen/blacktree/v1"
	"github.com/blacktree/blacktree/internal/tlsutil"
)

// adminClient is an AdminService client with the admin token attached to
// every call.
type adminClient struct {
	conn  *grpc.ClientConn
	api   blacktreev1.AdminServiceClient
	token string
	hub   string
	c     *common
}

func dialHub(c *common) (*adminClient, error) {
	token, err := c.adminToken()
	if err != nil {
		return nil, err
	}
	var creds credentials.TransportCredentials
	switch {
	case c.insecure && (c.tlsCA != "" || c.tlsCert != "" || c.tlsKey != ""):
		return nil, usageErr("--insecure excludes --tls-ca, --tls-cert and --tls-key")
	case c.insecure:
		creds = insecure.NewCredentials()
	default:
		cfg, err := tlsutil.ClientConfig(c.tlsCA, c.tlsCert, c.tlsKey, "")
		if err != nil {
			return nil, usageErr("%v", pathErr(err))
		}
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(c.hub, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, usageErr("--hub %q: %v", c.hub, err)
	}
	return &adminClient{conn: conn, api: blacktreev1.NewAdminServiceClient(conn), token: token, hub: c.hub, c: c}, nil
}

func (a *adminClient) close() { _ = a.conn.Close() }

// ctx bounds one call and attaches the token. The token travels as
// metadata rather than PerRPCCredentials so that --insecure works on
// loopback too (the hub decides whether plaintext is acceptable).
func (a *adminClient) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(parent, a.c.connectTimeout)
	if a.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+a.token)
	}
	return ctx, cancel
}

// rpcErr maps a failed admin call to one line and an exit code.
func (a *adminClient) rpcErr(call string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		if errors.Is(err, context.Canceled) {
			return infraErr("%s: interrupted", call)
		}
		return infraErr("%s on hub %s: %v", call, a.hub, err)
	}
	switch st.Code() {
	case codes.Unavailable:
		return infraErr("cannot reach hub %s: %s (check --hub, and --insecure / --tls-ca)", a.hub, st.Message())
	case codes.DeadlineExceeded:
		return infraErr("%s on hub %s: no answer within --connect-timeout %s", call, a.hub, a.c.connectTimeout)
	case codes.Unauthenticated, codes.PermissionDenied:
		return infraErr("hub %s refused the admin token (%s): check --admin-token-file or BLACKTREE_ADMIN_TOKEN", a.hub, st.Message())
	case codes.NotFound, codes.InvalidArgument, codes.FailedPrecondition:
		return failedErr("%s: %s", call, st.Message())
	default:
		return infraErr("%s on hub %s: %s: %s", call, a.hub, st.Code(), st.Message())
	}
}
