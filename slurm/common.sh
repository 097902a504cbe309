# shellcheck shell=bash
# Shared by slurm/*.sbatch: settings, run folder, container runtime, launch, requeue on preemption.
# Every node runs the same entrypoint: `python -m primus_bridge.launch -- train ...` (one task per node;
# the launcher starts one process per GPU with torchrun). Settings come from the environment at submit
# time, so nothing here needs editing (sbatch passes your environment to the job):
#
#   CONTAINER_RUNTIME  pyxis | apptainer | docker | podman | none             (default: pyxis)
#   IMAGE              container image (pyxis/docker/podman) or .sif file (apptainer)
#   GPU_TYPE           mi300x mi325x mi355x h100 h200 b200; picks --rocm/--nv and recipe settings
#   CONFIG             training YAML (relative paths are under PRIMUS_BRIDGE_DIR)
#   RECIPE             recipe module in recipes/; set it empty (RECIPE=) for none
#   DATA_PATH          training data (--data_path); default: the one in CONFIG
#   HF_MODEL           HF model folder or hub id to start from (--convert_from_hf)
#   OUTPUT_DIR         checkpoints and per-job run folders   (default: $PRIMUS_BRIDGE_DIR/outputs/<job name>)
#   SAVE_DIR           checkpoint folder (default: $OUTPUT_DIR/checkpoints; a requeued job resumes from it)
#   TRAIN_ARGS         more trainer flags, e.g. "--train_iters 2000 --lr 1e-4"
#   LAUNCH_ARGS        launcher flags, e.g. "--socket-ifname ens1" or "--dry-run"
#   MOUNTS             more host folders for the container, comma-separated (SRC[:DST])
#   PRIMUS_BRIDGE_DIR  the primus-bridge checkout (default: the folder sbatch was run from)
#   PYTHON             Python inside the container, or on the host with CONTAINER_RUNTIME=none (python3)
# Secrets (HF_TOKEN) are passed by name from your environment, never written to disk.
# Slurm's own settings (time, partition, account, nodes, GPUs, log file) are overridden with sbatch flags
# or SBATCH_* variables, e.g. SBATCH_TIMELIMIT=2:00:00 SBATCH_PARTITION=mi300x sbatch slurm/...

# Exit codes of primus_bridge/run/exit_codes.py: only a preempted run is requeued.
PREEMPTED_EXIT_CODE=124  # checkpoint saved after SIGUSR1/SIGTERM: requeue and resume
CONFIG_EXIT_CODE=2       # config or input problem: a rerun fails the same way
NONFINITE_EXIT_CODE=3    # training diverged (NaN/Inf loss or gradient): a rerun diverges the same way

pb_die() { echo "primus-bridge: error: $*" >&2; exit 2; }

pb_log() { echo "[$(date '+%F %T')] primus-bridge: $*"; }

# The vendor of GPU_TYPE: rocm, cuda, or none when GPU_TYPE is empty (CPU runs).
pb_vendor() {
  case "$GPU_TYPE" in
    mi300x | mi325x | mi355x) echo rocm ;;
    h100 | h200 | b200) echo cuda ;;
    "") echo none ;;
    *) return 1 ;;
  esac
}

pb_defaults() {
  : "${PRIMUS_BRIDGE_DIR:=${SLURM_SUBMIT_DIR:-$PWD}}"
  : "${CONTAINER_RUNTIME:=pyxis}"
  : "${GPU_TYPE=mi300x}"
  VENDOR=$(pb_vendor) || pb_die "GPU_TYPE=$GPU_TYPE: expected one of mi300x mi325x mi355x h100 h200 b200"
  : "${IMAGE:=primus-bridge:$VENDOR}"
  : "${PYTHON:=python3}"
  : "${OUTPUT_DIR:=$PRIMUS_BRIDGE_DIR/outputs/$SLURM_JOB_NAME}"
  : "${SAVE_DIR:=$OUTPUT_DIR/checkpoints}"
  : "${TRAIN_ARGS:=}" "${LAUNCH_ARGS:=}" "${MOUNTS:=}" "${DATA_PATH:=}" "${HF_MODEL:=}" "${RECIPE=}"
  [[ -n "${CONFIG:-}" ]] || pb_die "CONFIG is not set: the training YAML to run"
  [[ -f "$PRIMUS_BRIDGE_DIR/primus_bridge/launch/__init__.py" ]] \
    || pb_die "PRIMUS_BRIDGE_DIR=$PRIMUS_BRIDGE_DIR is not a primus-bridge checkout" \
      "(submit from it or set PRIMUS_BRIDGE_DIR)"
  [[ "$CONFIG" = /* ]] || CONFIG="$PRIMUS_BRIDGE_DIR/$CONFIG"
  [[ -f "$CONFIG" ]] || pb_die "CONFIG=$CONFIG does not exist"
  RUN_DIR="$OUTPUT_DIR/runs/$SLURM_JOB_NAME-$SLURM_JOB_ID"
  mkdir -p "$RUN_DIR" "$SAVE_DIR"
}

# The trainer's command line, in the array TRAIN.
pb_train_args() {
  TRAIN=(train --config "$CONFIG" --save "$SAVE_DIR")
  if [[ -n "$RECIPE" ]]; then TRAIN+=(--recipe "$RECIPE"); fi
  if [[ -n "$GPU_TYPE" ]]; then TRAIN+=(--gpu "$GPU_TYPE"); fi
  if [[ -n "$DATA_PATH" ]]; then TRAIN+=(--data_path "$DATA_PATH"); fi
  if [[ -n "$HF_MODEL" ]]; then TRAIN+=(--convert_from_hf --hf_model_name_or_path "$HF_MODEL"); fi
  local extra=()
  read -r -a extra <<<"$TRAIN_ARGS"
  TRAIN+=("${extra[@]}")
}

# Host folders the container needs, one per line, each mounted at the same path.
pb_mount_list() {
  {
    printf '%s\n' "$PRIMUS_BRIDGE_DIR" "$OUTPUT_DIR" "$SAVE_DIR" "$(dirname "$CONFIG")"
    if [[ -n "$DATA_PATH" ]]; then dirname "$DATA_PATH"; fi
    if [[ -n "${HF_HOME:-}" ]]; then echo "$HF_HOME"; fi
  } | sort -u | sed 's/.*/&:&/'
  if [[ -n "$MOUNTS" ]]; then tr ',' '\n' <<<"$MOUNTS"; fi
}

# Names of the variables a docker/podman container gets from the task's environment (values stay in
# memory): what is exported here, plus the per-task SLURM variables that only exist inside the step.
pb_passed_env_names() {
  {
    compgen -e | grep -E '^(SLURM_|MASTER_|NCCL_|RCCL_|GLOO_|TORCH_|HSA_|HIP_|CUDA_|HF_|PRIMUS_|PYTHON)' || true
    printf '%s\n' SLURM_STEP_ID SLURM_STEP_NUM_TASKS SLURM_STEP_NODELIST SLURM_PROCID SLURM_NODEID \
      SLURM_LOCALID SLURM_GPUS_ON_NODE MASTER_ADDR MASTER_PORT PYTHONUNBUFFERED
  } | sort -u
}

# srun options (SRUN_OPTS) and the command prefix inside the step (WRAP) for CONTAINER_RUNTIME.
pb_container() {
  local mounts
  mounts=$(pb_mount_list | paste -sd, -)
  SRUN_OPTS=(--ntasks-per-node=1 --kill-on-bad-exit=1)
  WRAP=()
  case "$CONTAINER_RUNTIME" in
    pyxis) CONTAINER_NAME="primus-bridge-$SLURM_JOB_ID"  # the same on every attempt: see pb_remove_container
           SRUN_OPTS+=(--container-image="$IMAGE" --container-name="$CONTAINER_NAME" --container-writable
                       --container-mounts="$mounts" --container-workdir="$PRIMUS_BRIDGE_DIR") ;;
    apptainer) WRAP=(apptainer exec)
               if [[ $VENDOR == rocm ]]; then WRAP+=(--rocm); elif [[ $VENDOR == cuda ]]; then WRAP+=(--nv); fi
               WRAP+=(--bind "$mounts" --pwd "$PRIMUS_BRIDGE_DIR" "$IMAGE") ;;
    docker | podman) pb_docker_wrap "$mounts" ;;
    none) ;;
    *) pb_die "CONTAINER_RUNTIME=$CONTAINER_RUNTIME: expected pyxis, apptainer, docker, podman or none" ;;
  esac
}

pb_docker_wrap() {
  local gpu=()
  case "$VENDOR/$CONTAINER_RUNTIME" in
    rocm/*) gpu=(--device=/dev/kfd --device=/dev/dri --group-add=video --security-opt=seccomp=unconfined) ;;
    cuda/docker) gpu=(--gpus=all) ;;
    cuda/podman) gpu=(--device=nvidia.com/gpu=all) ;;
  esac
  WRAP=("$CONTAINER_RUNTIME" run --rm --init --network=host --ipc=host "${gpu[@]}" -w "$PRIMUS_BRIDGE_DIR")
  local mount name
  while IFS= read -r mount; do WRAP+=(-v "$mount"); done < <(pb_mount_list)
  while IFS= read -r name; do WRAP+=(--env "$name"); done < <(pb_passed_env_names)
  WRAP+=("$IMAGE")
}

# pyxis keeps a named container on each node after the job (with its default container_scope=global), so a
# requeued job that lands on the same nodes skips the image import. Once the job is over for good, remove it.
# (With container_scope=job pyxis names it pyxis_<job id>_<name> and removes it itself; nothing is found here.)
pb_remove_container() {
  if [[ "$CONTAINER_RUNTIME" != pyxis ]]; then return 0; fi
  pb_log "removing the pyxis container $CONTAINER_NAME from the job's nodes"
  srun --ntasks-per-node=1 enroot remove --force "pyxis_$CONTAINER_NAME" >/dev/null 2>&1 || true
}

pb_record_job() {
  {
    echo "job $SLURM_JOB_ID ($SLURM_JOB_NAME) attempt $((${SLURM_RESTART_COUNT:-0} + 1)) on $SLURM_JOB_NODELIST"
    local image=""
    if [[ "$CONTAINER_RUNTIME" != none ]]; then image=" image=$IMAGE"; fi
    echo "runtime=$CONTAINER_RUNTIME$image gpu=${GPU_TYPE:-none} config=$CONFIG recipe=${RECIPE:-none}"
    echo "save=$SAVE_DIR master=$MASTER_ADDR"
  } >>"$RUN_DIR/job.txt"
}

# Run the launcher on every node; on the trainer's preemption exit code, requeue this job.
pb_main() {
  pb_defaults
  # The rendezvous host, found here because scontrol is rarely inside the container.
  MASTER_ADDR=${MASTER_ADDR:-$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)}
  export MASTER_ADDR PYTHONUNBUFFERED=1
  pb_train_args
  pb_container
  pb_record_job
  local launch=() rc=0
  read -r -a launch <<<"$LAUNCH_ARGS"
  pb_log "attempt $((${SLURM_RESTART_COUNT:-0} + 1)); log: $RUN_DIR/train.log"
  srun "${SRUN_OPTS[@]}" "${WRAP[@]}" "$PYTHON" -m primus_bridge.launch "${launch[@]}" -- "${TRAIN[@]}" 2>&1 \
    | tee -a "$RUN_DIR/train.log" || rc=${PIPESTATUS[0]}
  if [[ $rc -eq $PREEMPTED_EXIT_CODE ]]; then
    pb_log "preempted after a checkpoint in $SAVE_DIR; requeueing job $SLURM_JOB_ID"
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
  fi
  if [[ $rc -eq $NONFINITE_EXIT_CODE ]]; then
    pb_log "training diverged (NaN/Inf); not requeued: the last good checkpoint is in $SAVE_DIR" \
      "(see $RUN_DIR/train.log)"
  elif [[ $rc -eq $CONFIG_EXIT_CODE ]]; then
    pb_log "configuration or input problem; not requeued (see $RUN_DIR/train.log)"
  fi
  pb_remove_container
  pb_log "finished with exit code $rc"
  exit "$rc"
}
