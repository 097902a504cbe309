#!/usr/bin/env bash
# Example launches of the user contract: sft | hf | lora | chat | export.
# No argument: an interactive menu. Paths and GPU count come from the environment:
#   CKPT (Megatron checkpoint), DATA (instruction data), CHAT_DATA, HF_MODEL, SAVE (where a run without a
#   config of its own keeps its checkpoints), OUT, NPROC (GPUs per node).
# DRY_RUN=1 prints each command instead of running it.
set -euo pipefail
cd "$(dirname "$0")/.."

NPROC="${NPROC:-8}"
CKPT="${CKPT:-/path/to/pretrained/checkpoint}"
DATA="${DATA:-/path/to/instruction/data}"
CHAT_DATA="${CHAT_DATA:-/path/to/chat/data}"
HF_MODEL="${HF_MODEL:-meta-llama/Llama-3-8B}"
SAVE="${SAVE:-/path/to/checkpoints}"
OUT="${OUT:-/path/to/output/hf_model}"
PYTHON="${PYTHON:-python}"
CONFIGS=examples/configs/megatron_bridge
TRAIN=(torchrun "--nproc-per-node=${NPROC}" -m primus_bridge.train --framework megatron_bridge)

usage() {
    echo "usage: $0 [sft|hf|lora|chat|export]   (no argument: interactive menu)" >&2
}

run() {
    echo "+ $*"
    if [ "${DRY_RUN:-0}" != 1 ]; then "$@"; fi
}

example() {
    case "$1" in
        sft) run "${TRAIN[@]}" --config "$CONFIGS/llama_sft_posttrain.yaml" --load "$CKPT" --data_path "$DATA" \
                 --lr 5e-6 --train_iters 5000 ;;
        hf) run "${TRAIN[@]}" --convert_from_hf --hf_model_name_or_path "$HF_MODEL" --data_path "$DATA" \
                --lr 5e-6 --train_iters 5000 --save "$SAVE" ;;
        lora) run "${TRAIN[@]}" --config "$CONFIGS/llama_lora_posttrain.yaml" --data_path "$DATA" \
                  --use_lora --lora_rank 16 --lora_alpha 32 ;;
        chat) run "${TRAIN[@]}" --data_path "$CHAT_DATA" --dataset_format sharegpt --chat_format chatml \
                  --prompt_template chatml --load "$CKPT" --save "$SAVE" ;;
        export) run "$PYTHON" -m primus_bridge.convert --framework megatron_bridge --load "$CKPT" \
                    --convert_to_hf --hf_save_path "$OUT" ;;
        *) usage; return 2 ;;
    esac
}

if [ $# -gt 0 ]; then
    example "$1"
    exit $?
fi
if [ ! -t 0 ]; then
    usage
    exit 2
fi
PS3="choose an example: "
select choice in sft hf lora chat export quit; do
    [ "$choice" = quit ] && exit 0
    [ -n "$choice" ] && { example "$choice"; exit $?; }
done
