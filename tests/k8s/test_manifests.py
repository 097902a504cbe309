"""k8s/: every manifest and the NVIDIA overlay output validate offline; the jobs keep the launch contract."""

import argparse
import copy
import os
from pathlib import Path

import pytest
import yaml
from manifest_schema import kustomize_build, load_documents, problems

from primus_bridge.config import add_config_arguments, load_config

MANIFESTS = ["k8s/pvc.yaml", "k8s/lora-job.yaml", "k8s/sft-job.yaml"]


def documents_of(repo: Path, name: str) -> list[dict]:
    return load_documents((repo / name).read_text())


def jobs_of(docs: list[dict]) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == "PyTorchJob"]


def replicas(job: dict) -> dict[str, dict]:
    return job["spec"]["pytorchReplicaSpecs"]


def trainer_container(replica: dict) -> dict:
    (container,) = [c for c in replica["template"]["spec"]["containers"] if c["name"] == "pytorch"]
    return container


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_validates(repo, name):
    docs = documents_of(repo, name)
    assert docs
    for doc in docs:
        assert problems(doc) == [], f"{name}: {doc['kind']} {doc['metadata']['name']}"


def test_nvidia_overlay_validates_and_swaps_gpus(repo):
    docs = load_documents(kustomize_build(repo / "k8s" / "overlays" / "nvidia"))
    base = load_documents(kustomize_build(repo / "k8s" / "base"))
    assert sorted(d["metadata"]["name"] for d in docs) == sorted(d["metadata"]["name"] for d in base)
    for doc in docs:
        assert problems(doc) == [], f"overlay: {doc['kind']} {doc['metadata']['name']}"
    for job in jobs_of(docs):
        for replica in replicas(job).values():
            container = trainer_container(replica)
            assert container["resources"]["limits"] == {"nvidia.com/gpu": 8}
            assert container["image"].endswith(":cuda")


COMPONENTS = ["rdma", "volcano", "coscheduling"]


def build_with_components(repo: Path, tmp_path: Path, resource: str, components: list[str]) -> list[dict]:
    """Render a kustomization that stacks k8s/overlays/<component> on k8s/<resource>, as k8s/README.md shows."""
    k8s = Path(os.path.relpath(repo / "k8s", tmp_path))
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [str(k8s / resource)], "components": [str(k8s / "overlays" / c) for c in components]}))
    return load_documents(kustomize_build(tmp_path))


@pytest.mark.parametrize("resource", ["base", "overlays/nvidia"])
def test_components_stack_and_validate(repo, tmp_path, resource):
    docs = build_with_components(repo, tmp_path, resource, ["rdma", "volcano"])
    for doc in docs:
        assert problems(doc) == [], f"{resource} + components: {doc['kind']} {doc['metadata']['name']}"
    jobs = {job["metadata"]["name"]: job for job in jobs_of(docs)}
    for job in jobs.values():
        assert job["spec"]["runPolicy"]["schedulingPolicy"] == {"queue": "default"}
    for role, replica in replicas(jobs["primus-bridge-sft-llama70b"]).items():
        container = trainer_container(replica)
        assert container["resources"]["limits"]["rdma/rdma_shared_device_a"] == 1, role
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["IPC_LOCK"]}, role
    lora = trainer_container(replicas(jobs["primus-bridge-lora-llama8b"])["Master"])
    assert "add" not in lora["securityContext"]["capabilities"], "one node needs no RDMA"


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_component_validates(repo, tmp_path, component):
    docs = build_with_components(repo, tmp_path, "base", [component])
    base = load_documents(kustomize_build(repo / "k8s" / "base"))
    assert [d["metadata"]["name"] for d in docs] == [d["metadata"]["name"] for d in base]
    for doc in docs:
        assert problems(doc) == [], f"{component}: {doc['kind']} {doc['metadata']['name']}"
    assert docs != base


def test_coscheduling_waits_for_the_whole_gang(repo, tmp_path):
    for job in jobs_of(build_with_components(repo, tmp_path, "base", ["coscheduling"])):
        assert job["spec"]["runPolicy"]["schedulingPolicy"]["scheduleTimeoutSeconds"] > 60


def test_top_level_manifests_are_the_base(repo):
    for name in MANIFESTS:
        assert (repo / name).resolve() == (repo / "k8s" / "base" / Path(name).name).resolve()


def test_schema_rejects_a_misspelt_field(repo):
    (job,) = jobs_of(documents_of(repo, "k8s/lora-job.yaml"))
    broken = copy.deepcopy(job)
    broken["spec"]["runPolicy"]["backofLimit"] = 3
    assert any("backofLimit" in p for p in problems(broken))
    broken = copy.deepcopy(job)
    pod = replicas(broken)["Master"]["template"]["spec"]
    pod["terminationGracePeriodSecond"] = pod.pop("terminationGracePeriodSeconds")
    assert any("terminationGracePeriodSecond" in p for p in problems(broken))
    broken = copy.deepcopy(job)
    trainer_container(replicas(broken)["Master"])["resources"]["limits"]["amd.com/gpu"] = "eight"
    assert problems(broken)


@pytest.mark.parametrize("name", ["k8s/lora-job.yaml", "k8s/sft-job.yaml"])
def test_jobs_keep_the_launch_contract(repo, name):
    (job,) = jobs_of(documents_of(repo, name))
    gpus_per_node = int(job["spec"]["nprocPerNode"])
    assert job["spec"]["runPolicy"]["backoffLimit"] >= 1
    for role, replica in replicas(job).items():
        pod = replica["template"]["spec"]
        container = trainer_container(replica)
        assert replica["restartPolicy"] == "ExitCode", role
        assert container["command"][:3] == ["python3", "-m", "primus_bridge.launch"], role
        grace = int(container["command"][container["command"].index("--grace-seconds") + 1])
        assert grace < pod["terminationGracePeriodSeconds"], f"{role}: torchrun must give up before the kubelet"
        assert container["resources"]["limits"] == {"amd.com/gpu": gpus_per_node}, role
        assert {"name": "pytorchjob-port", "containerPort": 23456} in container["ports"], role
        volumes = {v["name"]: v for v in pod["volumes"]}
        shm = [m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"]
        assert shm and volumes[shm[0]["name"]]["emptyDir"]["medium"] == "Memory", role


@pytest.mark.parametrize("name", ["k8s/lora-job.yaml", "k8s/sft-job.yaml"])
def test_no_secret_inline(repo, name):
    for job in jobs_of(documents_of(repo, name)):
        for replica in replicas(job).values():
            env = {e["name"]: e for e in trainer_container(replica)["env"]}
            assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token",
                                                                     "optional": True}
            assert not [n for n, e in env.items() if "TOKEN" in n and "value" in e]


def test_multi_node_job_shape(repo):
    (job,) = jobs_of(documents_of(repo, "k8s/sft-job.yaml"))
    counts = {role: r["replicas"] for role, r in replicas(job).items()}
    assert counts == {"Master": 1, "Worker": 3}
    (lora,) = jobs_of(documents_of(repo, "k8s/lora-job.yaml"))
    assert {role: r["replicas"] for role, r in replicas(lora).items()} == {"Master": 1}


@pytest.mark.parametrize("name", ["k8s/lora-job.yaml", "k8s/sft-job.yaml"])
def test_configmap_training_yaml_is_a_valid_config(repo, name, tmp_path, monkeypatch):
    docs = documents_of(repo, name)
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    (job,) = jobs_of(docs)
    volumes = replicas(job)["Master"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": config_map["metadata"]["name"]}} in volumes
    path = tmp_path / "train.yaml"
    path.write_text(config_map["data"]["train.yaml"])
    monkeypatch.chdir(tmp_path)
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    cfg = load_config(parser.parse_args(["--config", str(path), "--gpu", "mi300x"]))
    assert cfg.checkpointing.save.startswith("/data/") and cfg.data.data_path.startswith("/data/")
    assert cfg.mode == ("lora" if "lora" in name else "sft")
    assert yaml.safe_load(config_map["data"]["train.yaml"])["recipe"] in ("llama3_8b", "llama3_70b")
