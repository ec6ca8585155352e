package cluster

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

// portFloor is the lowest port FreeAddr and FreePortBase pick: below it
// sit well-known services.
const portFloor = 10000

// FreePortBase returns a port p such that p+offset is free on 127.0.0.1
// now for every offset, with all of them between portFloor and the
// kernel's ephemeral range (see FreeAddr for why below it), for a process
// that derives several ports from one, such as a RabbitMQ node (AMQP and
// Erlang distribution ports).
func FreePortBase(offsets ...int) (int, error) {
	highest := 0
	for _, o := range offsets {
		highest = max(highest, o)
	}
	room := ephemeralLow() - highest - portFloor
	if room <= 0 {
		return 0, fmt.Errorf("no room for ports at offsets %v between %d and the ephemeral range", offsets, portFloor)
	}
	for range 50 {
		p := portFloor + rand.IntN(room)
		ok := true
		for _, o := range offsets {
			ok = ok && portFree(p+o)
		}
		if ok {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free ports at offsets %v after 50 tries", offsets)
}

// portFree reports whether port can be listened on at 127.0.0.1 now.
func portFree(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
