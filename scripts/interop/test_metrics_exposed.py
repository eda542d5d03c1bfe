"""Every metric the Prometheus rules and the Grafana dashboard read is exposed by the services.

`circ deploy monitoring --list-metrics` names the series the generated rules and dashboard use.
Against the real local stack, in a fresh namespace, this test runs ingest, the realtime gateway,
the console and one consumer group (audit-log) from target/debug, makes the traffic that gives
each series its first label values, then scrapes every /metrics and checks that each listed name
has at least one sample in one of them.

The traffic:
- events published through the ingest HTTP API (`POST /v1/events`): HTTP and produce series;
- the group handles them: processed counts and handler durations;
- records whose value is not Avro: dead letters (the group's counter, the console's DLQ gauges);
- the group's PostgreSQL connection goes through a TCP proxy of this test, which is then cut:
  dependency failures, retries, the postgres breaker opens and the group pauses its partitions;
- an SSE subscriber receives an ephemeral `user.online` published through ingest (delivery
  count and latency), and a subscriber that never reads its socket is sent large messages
  until its queue overflows (dropped messages).

Logs of the processes, and which service exposed each name (exposed.txt), go to
target/metrics-artifacts/.
"""

import json
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
from workspace_processes import ROOT, WAIT, Process, circ, free_port, fresh_namespace, now_iso
from workspace_processes import produce_undecodable as shared_produce_undecodable

ARTIFACTS = ROOT / "target" / "metrics-artifacts"
GROUP = "audit-log"


# ---- Processes ------------------------------------------------------------------------------

class CuttableProxy:
    """A TCP proxy to `upstream` (host, port) that can be cut: open connections are closed and
    new ones are closed as soon as they are accepted, so the client sees its dependency fail."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.sockets = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets.update((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source, target):
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, target):
                self._close(s)

    def _close(self, s):
        with self.lock:
            self.sockets.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def cut(self):
        self.up = False
        with self.lock:
            open_sockets = list(self.sockets)
        for s in open_sockets:
            self._close(s)

    def close(self):
        self.cut()
        self.listener.close()


# ---- Fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def env():
    """A fresh namespace with its topics and schemas; its topics are deleted afterwards."""
    with fresh_namespace(ARTIFACTS, CIRC_OBJECT_STORE=str(ARTIFACTS / "objects")) as env:
        yield env


@pytest.fixture(scope="module")
def pg_proxy(env):
    url = urllib.parse.urlsplit(env["DATABASE_URL"])
    proxy = CuttableProxy((url.hostname or "127.0.0.1", url.port or 5432))
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture(scope="module")
def services(env, pg_proxy):
    """ingest, gateway, console and the audit-log group (its database behind `pg_proxy`), ready."""
    url = urllib.parse.urlsplit(env["DATABASE_URL"])
    proxied = url._replace(netloc=re.sub(r"@[^@]*$", f"@127.0.0.1:{pg_proxy.port}", url.netloc)
                           if "@" in url.netloc else f"127.0.0.1:{pg_proxy.port}")
    started = {}
    try:
        for name, extra in [
            ("ingest", lambda port: {"CIRC_INGEST_LISTEN": f"127.0.0.1:{port}"}),
            # A short client queue: a client that does not read overflows it quickly.
            ("gateway", lambda port: {"CIRC_GATEWAY_LISTEN": f"127.0.0.1:{port}", "CIRC_GATEWAY_QUEUE_LEN": "4",
                                      "CIRC_GATEWAY_WRITE_TIMEOUT": "30s"}),
            (GROUP, lambda port: {"CIRC_HANDLER_LISTEN": f"127.0.0.1:{port}", "CIRC_INSTANCE_ID": f"{GROUP}-0",
                                  "DATABASE_URL": urllib.parse.urlunsplit(proxied),
                                  "CIRC_DRAIN_TIMEOUT": "2s"}),
            ("console", lambda port: {"CIRC_CONSOLE_LISTEN": f"127.0.0.1:{port}", "CIRC_CONSOLE_REFRESH": "1s"}),
        ]:
            port = free_port()
            started[name] = Process(name, dict(env, **extra(port)), port, ARTIFACTS)
        for process in started.values():
            process.wait_ready()
        yield started
    finally:
        for process in started.values():
            process.stop()


# ---- Traffic --------------------------------------------------------------------------------

def publish(ingest, token, events):
    """POSTs a batch to ingest's /v1/events; returns the per-event results."""
    request = urllib.request.Request(f"{ingest.base}/v1/events", data=json.dumps(events).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        pytest.fail(f"POST /v1/events answered {e.code}: {e.read().decode(errors='replace')}")


def health_checks(env, count, status="HEALTHY"):
    return [{"type": "system.health",
             "data": {"component": "metrics-test", "status": status,
                      "instance": f"{env['CIRC_NAMESPACE']}-{uuid.uuid4().hex[:8]}",
                      "details": {"n": str(i)}, "checkedAt": now_iso()}}
            for i in range(count)]


def produce_undecodable(env, count):
    shared_produce_undecodable(env, count, "system.health", "/tests/metrics")


def sse_connect(gateway, token, channel, rcvbuf=None):
    """Opens `GET /v1/realtime/sse?channels=<channel>`; returns the socket once the gateway
    confirmed the subscription (its `subscribed` control frame)."""
    port = int(gateway.base.rsplit(":", 1)[1])
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(WAIT)
    s.connect(("127.0.0.1", port))
    query = urllib.parse.urlencode({"channels": channel, "access_token": token})
    s.sendall(f"GET /v1/realtime/sse?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              "Accept: text/event-stream\r\n\r\n".encode())
    received = read_until(s, b'"subscribed"', b"")
    assert b" 200 " in received.split(b"\r\n", 1)[0], f"SSE refused:\n{received.decode(errors='replace')}"
    return s


def read_until(s, needle, received):
    deadline = time.monotonic() + WAIT
    while needle not in received:
        assert time.monotonic() < deadline, f"{needle!r} not received within {WAIT} s:\n{received[-2000:]!r}"
        chunk = s.recv(65536)
        assert chunk, f"the stream ended before {needle!r}:\n{received[-2000:]!r}"
        received += chunk
    return received


def redis_publish(env, channel, payload):
    """PUBLISH over a bare RESP connection (the suite has no Redis client)."""
    url = urllib.parse.urlsplit(env["CIRC_REDIS_URL"])
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), timeout=10) as r:
        command = b""
        if url.password:
            command += resp(b"AUTH", *([url.username.encode()] if url.username else []), url.password.encode())
        for message in payload:
            command += resp(b"PUBLISH", channel.encode(), message)
        r.sendall(command)
        expected = len(payload) + (1 if url.password else 0)
        replies = b""
        while replies.count(b"\r\n") < expected:
            chunk = r.recv(65536)
            assert chunk, "Redis closed the connection"
            replies += chunk
        assert b"-" not in replies[:1] and b"\r\n-" not in replies, f"Redis refused: {replies!r}"


def resp(*parts):
    return f"*{len(parts)}\r\n".encode() + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


def wait_for(what, condition, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s")
        time.sleep(0.5)


def total(process, name, labels=""):
    """The sum of the samples of `name` whose labels contain `labels`."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in process.metrics().get(name, []) if labels in line)


def has(process, name, labels=""):
    return any(labels in line for line in process.metrics().get(name, []))


# ---- Test -----------------------------------------------------------------------------------

def listed_metrics(env):
    names = [n.strip() for n in circ(env, "deploy", "monitoring", "--list-metrics").splitlines() if n.strip()]
    assert names, "circ deploy monitoring --list-metrics printed nothing"
    return names


def test_every_metric_the_rules_and_dashboard_read_is_exposed(env, services, pg_proxy):
    names = listed_metrics(env)
    ingest, gateway, group, console = (services[n] for n in ("ingest", "gateway", GROUP, "console"))
    producer_token = circ(env, "token", "--sub", "metrics-test", "--events", "*").strip()
    user_token = circ(env, "token", "--sub", "metrics-user").strip()

    # Handled events (the database still reachable).
    publish(ingest, producer_token, health_checks(env, 3))
    handled = 'type="system.health"'
    wait_for(f"{GROUP} did not handle the 3 events",
             lambda: total(group, "circulatory_events_processed_total", handled) >= 3)

    # Dead letters: values that are not Avro.
    produce_undecodable(env, 2)
    wait_for(f"{GROUP} did not dead-letter the 2 records",
             lambda: total(group, "circulatory_events_dead_lettered_total") >= 2)

    # Realtime: an ephemeral event published through ingest reaches an SSE subscriber.
    listener = sse_connect(gateway, user_token, "user:online")
    try:
        user_id = str(uuid.uuid4())
        [result] = publish(ingest, producer_token, [{"type": "user.online", "data": {
            "userId": user_id, "platform": "WEB", "onlineAt": int(time.time() * 1000)}}])
        assert result.get("channels") == ["user:online"] and result.get("receivers", 0) >= 1, result
        read_until(listener, user_id.encode(), b"")
    finally:
        listener.close()
    wait_for("the gateway observed no delivery latency",
             lambda: total(gateway, "circ_gateway_delivery_latency_seconds_count") >= 1)

    # A subscriber that never reads (a tiny receive buffer): large messages overflow its queue.
    channel = "post:created"
    slow = sse_connect(gateway, user_token, channel, rcvbuf=4096)
    try:
        pad = "x" * 128 * 1024
        deadline = time.monotonic() + WAIT
        while not total(gateway, "circ_gateway_messages_dropped_total", 'reason="queue_full"'):
            assert time.monotonic() < deadline, f"no message dropped within {WAIT} s:\n{gateway.tail()}"
            redis_publish(env, channel, [json.dumps({"type": "post.created", "id": str(uuid.uuid4()),
                                                     "time": now_iso(), "data": {"pad": pad}}).encode()
                                         for _ in range(16)])
            time.sleep(0.2)
    finally:
        slow.close()

    # PostgreSQL unreachable for the group: failures, retries, an open breaker, paused partitions.
    pg_proxy.cut()
    publish(ingest, producer_token, health_checks(env, 8, status="DEGRADED"))
    wait_for(f"{GROUP} retried nothing", lambda: total(group, "circulatory_events_retried_total") >= 1)
    wait_for("the console shows no postgres breaker",
             lambda: has(console, "circulatory_group_breaker_open", 'dependency="postgres"'))
    wait_for("the console shows no partition paused for the breaker",
             lambda: total(console, "circulatory_group_paused_partitions", 'reason="breaker"') >= 1)

    # Every listed name in one round of scrapes (gauges set from the latest view come and go).
    last = {}

    def complete():
        last.clear()
        last.update({p.name: set(p.metrics()) for p in services.values()})
        return all(any(n in exposed for exposed in last.values()) for n in names)

    deadline = time.monotonic() + WAIT
    while not complete() and time.monotonic() < deadline:
        time.sleep(1)
    (ARTIFACTS / "exposed.txt").write_text("".join(
        f"{n}: {', '.join(s for s, exposed in last.items() if n in exposed) or 'MISSING'}\n" for n in names))
    missing = [n for n in names if not any(n in exposed for exposed in last.values())]
    if missing:
        lines = [f"{len(missing)} of {len(names)} metric names are exposed by no service:"]
        lines += [f"  {n}: missing from {', '.join(last)}" for n in missing]
        pytest.fail("\n".join(lines))
