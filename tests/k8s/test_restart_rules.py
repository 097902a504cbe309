"""The jobs' restart semantics, checked against the Kubeflow training operator's rules.

The rules, as the operator's source states them (kubeflow/training-operator, release-1.9):
- A replica's `restartPolicy: ExitCode` gives its pods `restartPolicy: Never` (pkg/core/pod.go SetRestartPolicy).
  When such a pod fails, the operator deletes and recreates it if the exit code of its `pytorch` container is
  128 or more (pkg/util/train/train_util.go IsRetryableExitCode), else it marks the whole job Failed
  (pkg/controller.v1/common/pod.go ReconcilePods). OnFailure and Always recreate every failed pod.
- `runPolicy.backoffLimit` (pkg/core/job.go PastBackoffLimit): the container restartCount of every running pod
  of every OnFailure / Always / ExitCode replica type, summed; the job fails once the sum reaches the limit.
  A restart of the whole job under OnFailure therefore costs one per pod. A limit of 0 fails the job at its
  first failed pod (pkg/controller.v1/common/job.go: previousRetry + 1 > backoffLimit, with a work queue that
  counts no retries).
"""

import pytest
from manifest_schema import load_documents

from primus_bridge.config import CONFIG_EXIT_CODE
from primus_bridge.launch.scheduler_codes import exit_code_style, reported_exit_code
from primus_bridge.run import exit_codes

JOBS = ["k8s/lora-job.yaml", "k8s/sft-job.yaml"]
WHOLE_JOB_RESTARTS = 3
"""How many restarts of the whole job backoffLimit allows when a replica uses OnFailure."""


def operator_recreates(restart_policy: str, exit_code: int) -> bool:
    """Whether the training operator recreates a failed pod (True) or fails the job (False)."""
    if restart_policy == "ExitCode":
        return exit_code >= 128
    return restart_policy in ("OnFailure", "Always")


def documents(repo, name: str) -> list[dict]:
    return load_documents((repo / name).read_text())


def the_job(docs: list[dict]) -> dict:
    (job,) = [d for d in docs if d["kind"] == "PyTorchJob"]
    return job


def replicas(job: dict) -> dict[str, dict]:
    return job["spec"]["pytorchReplicaSpecs"]


def trainer_container(replica: dict) -> dict:
    (container,) = [c for c in replica["template"]["spec"]["containers"] if c["name"] == "pytorch"]
    return container


def plain_env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def pod_count(job: dict) -> int:
    return sum(r["replicas"] for r in replicas(job).values())


def launcher_exit(replica: dict, trainer_code: int) -> int:
    """The exit code the launcher reports for `trainer_code`, with this replica's environment."""
    return reported_exit_code(trainer_code, exit_code_style(plain_env(trainer_container(replica))))


def test_the_rule_this_file_encodes():
    assert operator_recreates("ExitCode", 137) and operator_recreates("ExitCode", 255)
    assert not operator_recreates("ExitCode", 124) and not operator_recreates("ExitCode", 1)
    assert operator_recreates("OnFailure", 3) and not operator_recreates("Never", 143)


@pytest.mark.parametrize("name", JOBS)
def test_a_checkpointed_stop_is_retried(repo, name):
    for role, replica in replicas(the_job(documents(repo, name))).items():
        assert replica["restartPolicy"] == "ExitCode", role
        code = launcher_exit(replica, exit_codes.PREEMPTED_EXIT_CODE)
        assert operator_recreates(replica["restartPolicy"], code), f"{role}: a checkpointed stop exits {code}"


@pytest.mark.parametrize("name", JOBS)
def test_permanent_failures_are_not_retried(repo, name):
    """Configuration errors, a diverged run, a failed trainer (torchrun exits 1): the job fails, no retry."""
    declared = {value for key, value in vars(exit_codes).items() if key.endswith("_EXIT_CODE")}
    permanent = (set(exit_codes.PERMANENT_EXIT_CODES) | declared | {1}) - {0, exit_codes.PREEMPTED_EXIT_CODE}
    assert {exit_codes.NONFINITE_EXIT_CODE, CONFIG_EXIT_CODE, 1} <= permanent
    for role, replica in replicas(the_job(documents(repo, name))).items():
        for trainer_code in sorted(permanent):
            code = launcher_exit(replica, trainer_code)
            assert not operator_recreates(replica["restartPolicy"], code), f"{role}: {trainer_code} -> {code}"


@pytest.mark.parametrize("name", JOBS)
def test_only_the_checkpointed_stop_changes_code(repo, name):
    """Every other code reaches the operator as it is: 1-127 permanent, deaths by a signal (128 + N) retried."""
    for replica in replicas(the_job(documents(repo, name))).values():
        for code in range(256):
            if code != exit_codes.PREEMPTED_EXIT_CODE:
                assert launcher_exit(replica, code) == code
        assert operator_recreates(replica["restartPolicy"], launcher_exit(replica, 137))  # OOM killer


@pytest.mark.parametrize("name", JOBS)
def test_backoff_limit_counts_every_pod(repo, name):
    job = the_job(documents(repo, name))
    limit = job["spec"]["runPolicy"]["backoffLimit"]
    assert limit > 0, "0 fails the job at its first failed pod, even one the restart policy would retry"
    assert limit >= pod_count(job) * WHOLE_JOB_RESTARTS, "under OnFailure the operator sums restarts over all pods"


def image_runs_as_root(repo) -> bool:
    """No USER line in the Dockerfiles: the images run as root."""
    lines = [line.strip() for f in (repo / "docker").glob("Dockerfile.*") for line in f.read_text().splitlines()]
    return not any(line.upper().startswith("USER ") for line in lines)


@pytest.mark.parametrize("name", JOBS)
def test_security_context(repo, name):
    as_root = image_runs_as_root(repo)
    for role, replica in replicas(the_job(documents(repo, name))).items():
        pod = replica["template"]["spec"]
        context = trainer_container(replica)["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, role
        assert context["capabilities"] == {"drop": ["ALL"]}, role
        assert not context.get("privileged", False), role
        non_root = context.get("runAsNonRoot", pod.get("securityContext", {}).get("runAsNonRoot", False))
        assert non_root is not as_root, f"{role}: runAsNonRoot must follow the image's user"


@pytest.mark.parametrize("name", JOBS)
def test_multi_pod_jobs_refuse_partial_evictions(repo, name):
    """Evicting one pod of several fails an ExitCode job (its peers exit 1); a single pod's eviction is a restart."""
    docs = documents(repo, name)
    job = the_job(docs)
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    selects_job = [b for b in budgets if all(
        b["spec"]["selector"]["matchLabels"].items() <= r["template"]["metadata"]["labels"].items()
        for r in replicas(job).values())]
    if pod_count(job) == 1:
        assert selects_job == []
        return
    (budget,) = selects_job
    assert budget["spec"]["maxUnavailable"] == 0
