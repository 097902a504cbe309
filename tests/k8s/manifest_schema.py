"""Offline validation of Kubernetes manifests.

Built-in kinds: the Kubernetes OpenAPI schemas bundled with `kubernetes-validate`, strict (unknown fields
rejected, as `kubectl apply` does by default). PyTorchJob: the openAPIV3Schema of the Kubeflow training
operator's CRD (schemas/kubeflow.org_v1_pytorchjob.json, see schemas/README.md) made strict the way the API
server treats a structural schema, and each replica's pod template against the Kubernetes PodTemplate schema.
"""

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

SCHEMAS = Path(__file__).parent / "schemas"
K8S_VERSION = latest_version()


def strict(schema):
    """Close every object schema that lists its properties, unless it preserves unknown fields."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: strict(value) for key, value in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        closed["additionalProperties"] = False
    return closed


def pytorchjob_validator() -> jsonschema.protocols.Validator:
    schema = strict(json.loads((SCHEMAS / "kubeflow.org_v1_pytorchjob.json").read_text()))
    return jsonschema.Draft7Validator(schema)


def problems(doc: dict) -> list[str]:
    """Every schema violation in one manifest document, as 'path: message' lines (empty when valid)."""
    if doc.get("apiVersion") == "kubeflow.org/v1" and doc.get("kind") == "PyTorchJob":
        found = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in pytorchjob_validator().iter_errors(doc)]
        for role, replica in (doc.get("spec", {}).get("pytorchReplicaSpecs") or {}).items():
            found += [f"{role}: {p}" for p in _builtin_problems(_pod_template(replica.get("template", {})))]
        return found
    return _builtin_problems(doc)


def _pod_template(template: dict) -> dict:
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "replica"}, "template": template}


def _builtin_problems(doc: dict) -> list[str]:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{'.'.join(map(str, err.path))}: {err.message}"]
    except kubernetes_validate.SchemaNotFoundError as err:
        return [err.message]
    return []


def load_documents(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kustomize_build(folder: Path) -> str:
    """`kubectl kustomize FOLDER` (or `kustomize build FOLDER`): the rendered manifests."""
    if shutil.which("kubectl"):
        argv = ["kubectl", "kustomize", str(folder)]
    elif shutil.which("kustomize"):
        argv = ["kustomize", "build", str(folder)]
    else:
        pytest.skip("neither kubectl nor kustomize is on PATH: cannot render the kustomize overlay")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed:\n{done.stderr}")
    return done.stdout
