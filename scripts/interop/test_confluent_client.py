"""Interoperability: a data team reads Circulatory's topics with Confluent's own Python client.

The record is produced by the project (`circ produce`), then read back with confluent-kafka's
`AvroDeserializer` and `SchemaRegistryClient` pointed at the registry. Nothing project-specific is
used on the reading side: if this passes, any Confluent-compatible consumer can read our topics.
"""

import datetime
import json
import os
import subprocess
import uuid
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = os.environ.get("CIRC_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
REGISTRY = os.environ.get("CIRC_REGISTRY_URL", "http://127.0.0.1:8081/apis/ccompat/v7")
CIRC = os.environ.get("CIRC_BIN", str(ROOT / "target" / "debug" / "circ"))


def circ(namespace, *args):
    env = dict(os.environ, CIRC_NAMESPACE=namespace, CIRC_LOG="error",
               CIRC_TOPOLOGY=str(ROOT / "topics.yaml"), CIRC_SCHEMAS=str(ROOT / "schemas"),
               CIRC_KAFKA_BOOTSTRAP=BOOTSTRAP, CIRC_REGISTRY_URL=REGISTRY)
    done = subprocess.run([CIRC, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"circ {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def plain(value):
    """What fastavro returns (datetime, UUID) as the JSON the project accepts and prints."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value


def test_confluent_avro_deserializer_reads_what_circulatory_produced():
    namespace = "py" + uuid.uuid4().hex[:12]
    topic = f"{namespace}.media.normal"
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)]).values():
        future.result(30)
    video_id, author_id = str(uuid.uuid4()), str(uuid.uuid4())
    data = {
        "videoId": video_id,
        "authorId": author_id,
        "renditions": [
            {"name": "720p", "width": 1280, "height": 720, "bitrateKbps": 2800,
             "playlistUrl": f"https://cdn.example/{video_id}/720p.m3u8"},
        ],
        "masterPlaylistUrl": f"https://cdn.example/{video_id}/master.m3u8",
        "durationMs": 61000,
        "completedAt": "2026-11-27T10:00:00.250Z",
    }
    schema = json.loads((ROOT / "schemas/media/video.transcode.completed.avsc").read_text())
    # Optional fields the sample leaves out come back as null.
    for field in schema["fields"]:
        if field["name"] not in data:
            assert field.get("default", "required") is None, f"{field['name']} is required"
            data[field["name"]] = None
    delivered = json.loads(circ(namespace, "produce", "video.transcode.completed",
                                "--data", json.dumps(data), "--correlation-id", "py-interop"))
    assert delivered["topic"] == topic

    consumer = Consumer({"bootstrap.servers": BOOTSTRAP, "group.id": f"{namespace}-data-team",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, delivered["partition"], delivered["offset"])])
    try:
        message = consumer.poll(30)
        assert message is not None, "no record within 30 s"
        assert message.error() is None, message.error()
    finally:
        consumer.close()
        for future in admin.delete_topics([topic]).values():
            future.result(30)

    deserializer = AvroDeserializer(SchemaRegistryClient({"url": REGISTRY}))
    value = deserializer(message.value(), SerializationContext(topic, MessageField.VALUE))
    assert plain(value) == data
    assert message.key().decode() == video_id
    headers = {k: v.decode() for k, v in message.headers()}
    assert headers["ce_type"] == "video.transcode.completed"
    assert headers["ce_id"] == delivered["id"]
    assert headers["ce_specversion"] == "1.0"
    assert headers["content-type"] == "application/avro"
    assert headers["correlation_id"] == "py-interop"
