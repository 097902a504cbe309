"""`convert_to_hf: true`: export the trained model in memory when finetune() finishes (no reload)."""

from pathlib import Path

from megatron.bridge.training.callbacks import Callback, CallbackContext

from ...config import PrimusConfig
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
        export_models(context.model, self.hf_source, Path(self.cfg.hf_save_path), self.template_name, tokenizer,
                      self.peft)
