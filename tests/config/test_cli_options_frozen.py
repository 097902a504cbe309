"""The train command's flags are a user contract: none appears or vanishes by accident."""

from primus_bridge.train import build_parser

TRAIN_FLAGS = sorted([
    "--chat_format", "--clip_grad", "--config", "--convert_from_hf", "--convert_to_hf", "--data_path",
    "--dataset_format", "--debug", "--engine", "--force", "--framework", "--global_batch_size", "--gpu", "--help",
    "--hf_model_name_or_path", "--hf_save_path", "--load", "--lora_alpha", "--lora_rank", "--lr",
    "--lr_warmup_iters", "--micro_batch_size", "--no_output_ok", "--no_resume", "--overwrite", "--prompt_template",
    "--recipe", "--save", "--seq_length", "--set", "--skip_bad_records", "--tokenizer", "--train_iters",
    "--use_lora", "--version", "-h",
])


def test_train_flags_are_exactly_the_documented_set():
    parser = build_parser()
    flags = sorted(option for action in parser._actions for option in action.option_strings)
    assert flags == TRAIN_FLAGS, "a train flag was added or removed: update README.md and this list together"
