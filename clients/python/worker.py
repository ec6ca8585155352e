#!/usr/bin/python3
"""A minimal Blacktree worker in Python: a client of WorkerService.Connect.

It shows the stream protocol (proto/blacktree/v1/worker.proto) from a second
language with nothing but the standard library, python3-grpcio and the code
generated into blacktree_gen/ (make generate-python). It runs no builds: every
job it is given succeeds at once, with image_url = the job's imageName and the
logs "python worker". It is a protocol example and a test fixture, not a
production worker (use blacktree-worker for that).

    /usr/bin/python3 clients/python/worker.py --hub 127.0.0.1:7070 \\
        --token-file worker.token --insecure --jobs 1

Protocol, as worker.proto describes it:
  1. open Connect with metadata `authorization: Bearer <token>`, send Register
     (worker id, name, slots=1, and any results no hub acknowledged yet);
  2. on Registered, send Heartbeat every Registered.heartbeat_interval;
  3. on RunJob, answer JobAccepted, then JobResult with the JobResponse;
  4. keep each result until ResultAck; after a broken stream, reconnect with
     backoff and re-send unacknowledged results in Register.

Exit status: 0 after --jobs acknowledged results (or SIGTERM/SIGINT),
1 when the hub refuses the worker (bad token, bad request), 2 on usage errors.
"""

import argparse
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "blacktree_gen"))

try:
    import grpc
    from google.protobuf import timestamp_pb2
    from blacktree.v1 import job_pb2, worker_pb2, worker_pb2_grpc
except ImportError as exc:  # pragma: no cover - environment problem
    sys.stderr.write(
        "worker.py: %s: install Debian's python3-grpcio and python3-protobuf "
        "(bash scripts/ensure-tools) and run with /usr/bin/python3\n" % exc
    )
    sys.exit(1)

VERSION = "0.1.0-python"
# The worker protocol version this worker speaks (docs/protocol.md#versions)
# and the optional behaviours it announces: once drained it rejects every
# RunJob with REJECT_REASON_DRAINING and says so in a heartbeat at once.
PROTOCOL_VERSION = 1
FEATURES = ["drain-reject"]
log = logging.getLogger("python-worker")

# Codes after which reconnecting cannot help: the hub refused us.
FATAL_CODES = (
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNIMPLEMENTED,
    # The hub does not speak our protocol version; the message names both.
    grpc.StatusCode.FAILED_PRECONDITION,
)


class Fatal(Exception):
    """The hub refused the worker; reconnecting would not help."""


def now():
    ts = timestamp_pb2.Timestamp()
    ts.GetCurrentTime()
    return ts


class Worker:
    """One worker identity, kept across streams (results survive reconnects)."""

    def __init__(self, args, token):
        self.args = args
        self.token = token
        self.worker_id = args.worker_id or "py-" + str(uuid.uuid4())
        self.name = args.name or socket.gethostname() + "-py"
        # Results not yet acknowledged by a hub, by job id. Only the thread
        # reading the stream (run_stream) touches it.
        self.unacked = {}
        self.acked = 0
        self.draining = False
        self.stopping = threading.Event()
        self.call = None  # the current stream, for stop()

    def done(self):
        return self.args.jobs > 0 and self.acked >= self.args.jobs

    def channel(self):
        options = [
            # docs/protocol.md#keepalive: keepalive set explicitly; 30 s is well above the
            # hub's enforcement minimum, heartbeats are data anyway.
            ("grpc.keepalive_time_ms", 30000),
            ("grpc.keepalive_timeout_ms", 10000),
        ]
        if self.args.insecure:
            return grpc.insecure_channel(self.args.hub, options=options)
        root = None
        if self.args.tls_ca:
            with open(self.args.tls_ca, "rb") as f:
                root = f.read()
        creds = grpc.ssl_channel_credentials(root_certificates=root)
        return grpc.secure_channel(self.args.hub, creds, options=options)

    def run(self):
        """Connect, serve, reconnect with backoff until done or stopped."""
        backoff = 0.5
        while not self.stopping.is_set() and not self.done():
            try:
                with self.channel() as ch:
                    registered = self.run_stream(worker_pb2_grpc.WorkerServiceStub(ch))
                if registered:
                    backoff = 0.5
            except Fatal:
                raise
            except grpc.RpcError as err:
                if err.code() in FATAL_CODES:
                    raise Fatal("hub refused the worker: %s: %s" % (err.code().name, err.details()))
                if self.stopping.is_set() or self.done():
                    break
                log.warning("stream broken: %s: %s; reconnecting in %.1fs", err.code().name, err.details(), backoff)
            if self.stopping.is_set() or self.done():
                break
            self.stopping.wait(backoff)
            backoff = min(backoff * 2, 10.0)

    def run_stream(self, stub):
        """Serve one Connect stream. Returns True if it got Registered."""
        out = queue.Queue()  # frames to send; None ends the stream
        hb_stop = threading.Event()
        registered = False

        def frames():
            # grpc's sending thread is the only one that writes to the stream.
            while True:
                msg = out.get()
                if msg is None:
                    return
                yield msg

        out.put(worker_pb2.WorkerMessage(register=worker_pb2.Register(
            worker_id=self.worker_id,
            name=self.name,
            version=VERSION,
            labels={"lang": "python"},
            slots=1,
            unacked_results=list(self.unacked.values()),
            draining=self.draining,
            protocol_version=PROTOCOL_VERSION,
            features=FEATURES,
        )))
        metadata = (("authorization", "Bearer " + self.token),)
        self.call = stub.Connect(frames(), metadata=metadata)
        try:
            for msg in self.call:
                kind = msg.WhichOneof("frame")
                if kind == "registered":
                    registered = True
                    interval = msg.registered.heartbeat_interval.ToTimedelta().total_seconds() or 10.0
                    log.info("registered: worker_id=%s session_id=%s hub_id=%s heartbeat=%.1fs hub_protocol=%d",
                             self.worker_id, msg.registered.session_id, msg.registered.hub_id, interval,
                             msg.registered.protocol_version or 1)
                    threading.Thread(target=self.heartbeats, args=(out, hb_stop, interval), daemon=True).start()
                elif kind == "run_job":
                    self.on_run_job(out, msg.run_job)
                elif kind == "result_ack":
                    job_id = msg.result_ack.job_id
                    if self.unacked.pop(job_id, None) is not None:
                        self.acked += 1
                        log.info("result acknowledged: job_id=%s (%d acknowledged)", job_id, self.acked)
                    if self.done():
                        log.info("done: %d results acknowledged", self.acked)
                        out.put(None)  # half-close; the hub then ends the stream
                        # ...or, should it not within 2 s, we end it.
                        timer = threading.Timer(2.0, self.call.cancel)
                        timer.daemon = True
                        timer.start()
                elif kind == "cancel_job":
                    # Jobs finish at once here; the result already went up.
                    log.info("cancel for finished job ignored: job_id=%s", msg.cancel_job.job_id)
                elif kind == "drain":
                    log.info("drain requested: %s", msg.drain.reason)
                    self.draining = True
                    out.put(self.heartbeat())
        except grpc.RpcError as err:
            if err.code() == grpc.StatusCode.CANCELLED and (self.done() or self.stopping.is_set()):
                return registered
            raise
        finally:
            hb_stop.set()
            out.put(None)
        return registered

    def heartbeat(self):
        return worker_pb2.WorkerMessage(heartbeat=worker_pb2.Heartbeat(
            sent_at=now(), running_job_ids=[], draining=self.draining))

    def heartbeats(self, out, stop, interval):
        while not stop.wait(interval):
            out.put(self.heartbeat())

    def on_run_job(self, out, run_job):
        job = run_job.job
        log.info("run job: job_id=%s repo_url=%s image_name=%s", job.job_id, job.repo_url, job.image_name)
        if job.job_id in self.unacked:
            # Idempotent RunJob: accept again, do not run twice, re-send result.
            out.put(worker_pb2.WorkerMessage(job_accepted=worker_pb2.JobAccepted(job_id=job.job_id)))
            out.put(worker_pb2.WorkerMessage(job_result=self.unacked[job.job_id]))
            return
        if self.draining:
            out.put(worker_pb2.WorkerMessage(job_rejected=worker_pb2.JobRejected(
                job_id=job.job_id, reason=worker_pb2.REJECT_REASON_DRAINING, message="draining")))
            return
        out.put(worker_pb2.WorkerMessage(job_accepted=worker_pb2.JobAccepted(job_id=job.job_id)))
        started = now()
        resp = job_pb2.JobResponse(
            job_id=job.job_id,
            success=True,
            logs="python worker",
            image_url=job.image_name,
            error="",
            worker_id=self.worker_id,
            started_at=started,
            finished_at=now(),
        )
        # The dispatch ticket goes back unchanged: a hub that does not hold
        # the job (restarted, or another replica) takes the result only
        # with it (docs/protocol.md#ownership).
        result = worker_pb2.JobResult(response=resp, dispatch_ticket=run_job.dispatch_ticket)
        self.unacked[job.job_id] = result
        out.put(worker_pb2.WorkerMessage(job_result=result))

    def stop(self, *_):
        self.stopping.set()
        call = self.call
        if call is not None:
            call.cancel()


def read_token(args):
    if args.token:
        return args.token
    if args.token_file:
        with open(args.token_file) as f:
            return f.read().strip()
    return os.environ.get("BLACKTREE_WORKER_TOKEN", "")


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Minimal Blacktree worker (Python): accepts every job and reports success.",
        epilog="example: /usr/bin/python3 clients/python/worker.py --hub 127.0.0.1:7070 "
               "--token-file worker.token --insecure --jobs 1",
    )
    p.add_argument("--hub", default=os.environ.get("BLACKTREE_HUB", "127.0.0.1:7070"),
                   help="hub gRPC address host:port (env BLACKTREE_HUB; default %(default)s)")
    p.add_argument("--token", help="worker bearer token (visible in ps: prefer --token-file or env BLACKTREE_WORKER_TOKEN)")
    p.add_argument("--token-file", help="file holding the worker token")
    p.add_argument("--insecure", action="store_true", help="plaintext gRPC (tests, loopback)")
    p.add_argument("--tls-ca", help="CA bundle to verify the hub (default: system roots)")
    p.add_argument("--jobs", type=int, default=0, help="exit after N acknowledged results (0: run until signalled)")
    p.add_argument("--worker-id", help="stable worker id (default: py-<random uuid>)")
    p.add_argument("--name", help="worker name (default: <hostname>-py)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default %(default)s)")
    args = p.parse_args(argv)
    if args.jobs < 0:
        p.error("--jobs must be >= 0")
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s [%(levelname)s] python-worker: %(message)s")
    try:
        token = read_token(args)
    except OSError as exc:
        p.error("cannot read --token-file: %s" % exc.strerror)
    if not token:
        p.error("no token: pass --token, --token-file or set BLACKTREE_WORKER_TOKEN")

    w = Worker(args, token)
    signal.signal(signal.SIGTERM, w.stop)
    signal.signal(signal.SIGINT, w.stop)
    try:
        w.run()
    except Fatal as exc:
        sys.stderr.write("worker.py: %s\n" % exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
