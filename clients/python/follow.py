#!/usr/bin/python3
"""Follow one Blacktree job's output live from the hub's job events.

The Python counterpart of `btctl logs -f`: it binds a private queue to the
hubs' events exchange (`--events-exchange` on the hub) for one job, prints
each `log` event's data to stdout as it arrives and exits with the job's
outcome at its `finished` event. The event format is in docs/protocol.md
(#job-events). Needs Debian's python3-pika (bash scripts/ensure-tools).

Exit status: 0 the job succeeded, 1 it failed, 2 usage error, 3 broker
unreachable, exchange missing or --timeout.
"""

import argparse
import json
import os
import sys

import pika
import pika.exceptions


def parse_args(argv):
    p = argparse.ArgumentParser(description="Follow a Blacktree job's output live.")
    p.add_argument("job_id", metavar="JOBID", help="the job to follow")
    p.add_argument("--amqp-url", default=os.environ.get("BLACKTREE_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
                   help="RabbitMQ URL [BLACKTREE_AMQP_URL]")
    p.add_argument("--events-exchange", default=os.environ.get("BLACKTREE_EVENTS_EXCHANGE", "blacktree.events"),
                   help="the hubs' job events exchange [BLACKTREE_EVENTS_EXCHANGE]")
    p.add_argument("--timeout", type=float, default=0,
                   help="exit 3 when no event of the job arrives for this many seconds (0: wait)")
    return p.parse_args(argv)


def follow(args):
    try:
        conn = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    except pika.exceptions.AMQPError as e:
        print(f"follow: cannot reach RabbitMQ: {e!r}", file=sys.stderr)
        return 3
    try:
        ch = conn.channel()
        try:
            ch.exchange_declare(args.events_exchange, exchange_type="topic", passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            print(f"follow: events exchange {args.events_exchange!r} does not exist "
                  f"(is the hub running with --events-exchange {args.events_exchange}?)", file=sys.stderr)
            return 3
        queue = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
        # job.<id>.*, not job.<id>.#: a job id may contain dots.
        ch.queue_bind(queue, args.events_exchange, routing_key=f"job.{args.job_id}.*")
        print(f"follow: following job {args.job_id}", file=sys.stderr, flush=True)
        last_seq = {}  # hubId -> the last seq seen from that hub
        for _method, _props, body in ch.consume(queue, auto_ack=True, inactivity_timeout=args.timeout or None):
            if body is None:
                print(f"follow: no event of job {args.job_id} for {args.timeout:g}s", file=sys.stderr)
                return 3
            event = json.loads(body)
            if event.get("jobId") != args.job_id:
                continue
            hub, seq = event.get("hubId", ""), event.get("seq", 0)
            if hub in last_seq and seq != last_seq[hub] + 1:
                print(f"follow: events {last_seq[hub] + 1}..{seq - 1} from hub {hub} missed", file=sys.stderr)
            last_seq[hub] = seq
            if event["event"] == "log":
                sys.stdout.write(event.get("data", ""))
                sys.stdout.flush()
            elif event["event"] == "finished":
                response = event.get("response", {})
                if response.get("success"):
                    print(f"follow: job {args.job_id} succeeded: {response.get('imageUrl', '')}", file=sys.stderr)
                    return 0
                print(f"follow: job {args.job_id} failed: {response.get('error', '')}", file=sys.stderr)
                return 1
    finally:
        if conn.is_open:
            conn.close()
    return 3


if __name__ == "__main__":
    sys.exit(follow(parse_args(sys.argv[1:])))
