"""`parallelism:` — how the model and data are split across GPUs (megatron engine)."""

from pydantic import Field

from .base import Section


class ParallelismConfig(Section):
    tensor_model_parallel_size: int = Field(default=1, ge=1)
    """Tensor parallel (TP) size: splits each layer's matrices; must divide heads and KV groups."""
    pipeline_model_parallel_size: int = Field(default=1, ge=1)
    """Pipeline parallel (PP) size: splits the layers into stages."""
    virtual_pipeline_model_parallel_size: int | None = Field(default=None, ge=1)
    """Interleaved pipeline chunks per stage (needs PP > 1)."""
    context_parallel_size: int = Field(default=1, ge=1)
    """Context parallel (CP) size: splits the sequence dimension."""
    sequence_parallel: bool = False
    """Sequence parallelism for layer norms and dropout (needs TP > 1)."""
    use_distributed_optimizer: bool = True
    """Shard optimizer states across data-parallel ranks (ZeRO-1)."""
