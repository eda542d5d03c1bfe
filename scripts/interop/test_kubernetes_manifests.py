"""The Kubernetes manifests in compose/kubernetes (written by `circ deploy kubernetes`) are valid
for a current Kubernetes, checked by `kubernetes-validate --strict` (unexpected properties are
errors), and the KEDA ScaledObjects, which it has no schema for, use only fields of KEDA's
ScaledObject and of its Kafka scaler.
"""

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "compose" / "kubernetes"
KUBERNETES_VERSION = "1.35.0"

SCALED_OBJECT_SPEC = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
    "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
}
KAFKA_METADATA = {
    "bootstrapServers", "consumerGroup", "topic", "partitionLimitation", "lagThreshold",
    "activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers", "excludePersistentLag",
    "scaleToZeroOnInvalidOffset", "limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions",
    "version", "sasl", "tls", "unsafeSsl",
}


def files():
    found = sorted(MANIFESTS.glob("*.yaml")) + sorted(MANIFESTS.glob("groups/*.yaml"))
    assert found, f"no manifests under {MANIFESTS}"
    return found


def test_every_manifest_is_valid_for_kubernetes():
    validator = Path(sys.executable).with_name("kubernetes-validate")
    done = subprocess.run(
        [str(validator), "--strict", "-k", KUBERNETES_VERSION, *map(str, files())],
        capture_output=True, text=True, timeout=300,
    )
    lines = done.stdout.splitlines() + done.stderr.splitlines()
    failures = [l for l in lines if l.startswith(("ERROR", "FAIL"))]
    assert done.returncode == 0 and not failures, "\n".join(lines)
    # Only the CRDs it has no schema for are skipped.
    for line in lines:
        if line.startswith("WARN"):
            assert "ScaledObject" in line or "Kustomization" in line, line


def test_scaled_objects_use_only_keda_kafka_scaler_fields():
    scaled = [d for f in files() for d in yaml.safe_load_all(f.read_text())
              if d and d.get("kind") == "ScaledObject"]
    assert len(scaled) == len(list(MANIFESTS.glob("groups/*.yaml")))
    for obj in scaled:
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        spec = obj["spec"]
        assert set(spec) <= SCALED_OBJECT_SPEC, set(spec) - SCALED_OBJECT_SPEC
        assert spec["scaleTargetRef"]["kind"] == "StatefulSet"
        for trigger in spec["triggers"]:
            assert trigger["type"] == "kafka"
            metadata = trigger["metadata"]
            assert set(metadata) <= KAFKA_METADATA, set(metadata) - KAFKA_METADATA
            assert ".retry." not in metadata["topic"], "never scale on a retry topic"
            assert all(isinstance(v, str) for v in metadata.values()), "KEDA metadata are strings"
