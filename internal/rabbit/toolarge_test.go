package rabbit

import (
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestBrokerSizeLimit(t *testing.T) {
	for _, tc := range []struct {
		err  *amqp.Error
		want int
	}{
		{&amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED - message size 20971520 is larger than configured max size 16777216"}, 16777216},
		{&amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED - message size 600000000 is larger than max size 536870912"}, 536870912},
		{&amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED - inequivalent arg 'x-queue-type'"}, 0},
		{&amqp.Error{Code: amqp.NotFound, Reason: "message size 2 is larger than max size 1"}, 0},
		{nil, 0},
	} {
		if got := brokerSizeLimit(tc.err); got != tc.want {
			t.Errorf("brokerSizeLimit(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
