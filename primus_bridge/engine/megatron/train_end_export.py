"""`convert_to_hf: true`: export the trained model in memory when finetune() finishes (no reload).

The export's last file, primus_bridge_export.json, names the checkpoint of the final step, so that a rerun
of the finished run (a requeue after the export) keeps it instead of training or exporting again.
"""

from pathlib import Path

from megatron.bridge.training.callbacks import Callback, CallbackContext

from ...checkpoint import export_marker, iteration_dir, read_marker, write_marker
from ...config import PrimusConfig
from ...utils.atomic import apply_umask
from .callbacks import is_rank0
from .export import export_models


class ExportAtTrainEnd(Callback):
    def __init__(self, cfg: PrimusConfig, hf_source: Path, tokenizer_path: str, template_name: str, peft):
        self.cfg = cfg
        self.template_name = template_name
        self.hf_source = hf_source
        self.tokenizer_path = tokenizer_path
        self.peft = peft

    def on_train_end(self, context: CallbackContext) -> None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self.tokenizer_path, local_files_only=True)
        out = Path(self.cfg.hf_save_path)
        export_models(context.model, self.hf_source, out, self.template_name, tokenizer, self.peft)
        if is_rank0():
            apply_umask(out)  # Megatron-Bridge's writer leaves its safetensors files 0600
            if self.cfg.checkpointing.save:
                step = context.state.train_state.step
                checkpoint = iteration_dir(Path(self.cfg.checkpointing.save), step)
                write_marker(out, export_marker(checkpoint, step, read_marker(checkpoint), "megatron"))
