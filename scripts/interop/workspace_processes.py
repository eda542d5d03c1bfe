"""What the interop tests that run the project's own binaries share: a fresh namespace provisioned
with `circ` (its topics deleted afterwards), the workspace's binaries as processes with their logs
kept, and records whose value is not Avro (dead-lettered at once as undecodable)."""

import datetime
import os
import re
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

ROOT = Path(__file__).resolve().parents[2]
CIRC = os.environ.get("CIRC_BIN", str(ROOT / "target" / "debug" / "circ"))
BIN_DIR = Path(CIRC).resolve().parent
BOOTSTRAP = os.environ.get("CIRC_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
#: The longest any single wait may take, in seconds.
WAIT = 60


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def circ(env, *args):
    done = subprocess.run([CIRC, *args], env=dict(env, CIRC_LOG="error"), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"circ {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextmanager
def fresh_namespace(artifacts, **extra):
    """The environment of a fresh namespace with its topics and schemas (and the migrations
    applied); its topics are deleted afterwards. `extra` adds variables."""
    artifacts.mkdir(parents=True, exist_ok=True)
    namespace = "t" + uuid.uuid4().hex[:12]
    env = dict(os.environ)
    env.update(
        CIRC_NAMESPACE=namespace,
        CIRC_TOPOLOGY=str(ROOT / "topics.yaml"),
        CIRC_SCHEMAS=str(ROOT / "schemas"),
        CIRC_KAFKA_BOOTSTRAP=BOOTSTRAP,
        CIRC_REPLICATION_FACTOR=os.environ.get("CIRC_REPLICATION_FACTOR", "1"),
        CIRC_JWT_SECRET=secrets.token_urlsafe(36),
        CIRC_LOG="info",
        **extra,
    )
    for name, default in [("CIRC_REGISTRY_URL", "http://127.0.0.1:8081/apis/ccompat/v7"),
                          ("CIRC_REDIS_URL", "redis://127.0.0.1:6379"),
                          ("DATABASE_URL", "postgres://circulatory:circulatory@127.0.0.1:5432/circulatory")]:
        env.setdefault(name, default)
    circ(env, "db", "migrate")
    circ(env, "topics", "apply")
    circ(env, "schemas", "register")
    try:
        yield env
    finally:
        admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
        mine = [t for t in admin.list_topics(timeout=15).topics if t.startswith(f"{namespace}.")]
        if mine:
            for future in admin.delete_topics(mine, operation_timeout=15).values():
                try:
                    future.result(30)
                except Exception:  # noqa: BLE001 - a topic already gone is fine
                    pass


class Process:
    """A binary of the workspace listening on 127.0.0.1:`port`, its output in
    `<artifacts>/<name>.log`."""

    def __init__(self, name, env, port, artifacts):
        self.name = name
        self.base = f"http://127.0.0.1:{port}"
        self.artifacts = artifacts
        self.log_path = artifacts / f"{name}.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen([str(BIN_DIR / name)], env=env, cwd=ROOT, stdout=self.log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def tail(self, lines=30):
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self):
        assert self.process.poll() is None, f"{self.name} exited ({self.process.returncode}):\n{self.tail()}"

    def wait_ready(self):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.base}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.3)
        pytest.fail(f"{self.name} not ready at {self.base}/readyz within {WAIT} s:\n{self.tail()}")

    def metrics(self):
        """The sample names of the exposition, each with its lines (the last scrape is kept in
        `<artifacts>/<name>.metrics`)."""
        self.check_alive()
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=10) as response:
            text = response.read().decode()
        (self.artifacts / f"{self.name}.metrics").write_text(text)
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                samples.setdefault(re.split(r"[{\s]", line, maxsplit=1)[0], []).append(line)
        return samples

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


def produce_undecodable(env, count, event_type, source):
    """Records of `event_type` on its admin topic with CloudEvents headers and a value that is not
    Avro: the group dead-letters them at once. Returns their event ids."""
    producer = Producer({"bootstrap.servers": BOOTSTRAP})
    topic = f"{env['CIRC_NAMESPACE']}.admin.high"
    ids = [str(uuid.uuid4()) for _ in range(count)]
    for event_id in ids:
        headers = [("ce_specversion", b"1.0"), ("ce_id", event_id.encode()),
                   ("ce_source", source.encode()), ("ce_type", event_type.encode()),
                   ("ce_time", now_iso().encode()), ("content-type", b"application/avro")]
        producer.produce(topic, key=source.rsplit("/", 1)[-1].encode() + b"-test",
                         value=b"this is not an avro record", headers=headers)
    assert producer.flush(30) == 0, "records not delivered"
    return ids
