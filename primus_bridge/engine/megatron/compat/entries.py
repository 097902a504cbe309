"""The registry: every adaptation of Megatron-Core, Megatron-Bridge and TransformerEngine's absence.

Each entry says what it replaces, why, the library versions it was written for (WRITTEN_FOR: every
fingerprint below was taken from them), how it verifies its targets (a source fingerprint per target:
what it replaces and what its replacement relies on) and when it is applied:

- import: before `megatron.bridge` is imported (the TE-absence import hook);
- process: once per process, by `registry.apply_adaptations()` (runtime.prepare_megatron calls it);
- model: per model, by a Megatron-Bridge model hook that container.py / fp8_frozen_base.py register; the
  registry verifies these targets with the process phase, before any model is built.

After a version bump, `python -m primus_bridge.engine.megatron.compat` prints every target's fingerprint
in the installed libraries: re-read each changed target against its adaptation, then update it here.
"""

from dataclasses import dataclass

from . import foreach_kernels
from .fingerprint import Target

WRITTEN_FOR = {"megatron-core": "0.19.2", "megatron-bridge": "0.6.2"}
"""The versions every entry was written for and fingerprinted against (the pins of constraints.txt)."""

PHASES = ("import", "process", "model")


@dataclass(frozen=True)
class Adaptation:
    name: str
    replaces: str
    why: str
    phase: str
    install: str
    """`module.function` under compat (or `..module.function` beside it) that applies the entry."""
    targets: tuple[Target, ...]
    not_applicable: str | None = None
    """`module.function` returning why the entry does not apply here (TE or apex installed), or None."""
    adds: tuple[str, ...] = ()
    """`module:attribute` bindings the entry creates where the library found none (a missing apex module it
    stands in for); the targets fingerprint how the library binds and reads them."""

    @property
    def libraries(self) -> tuple[str, ...]:
        return tuple(sorted({target.library for target in self.targets}))


def _bindings(bindings, fingerprint: str) -> tuple[Target, ...]:
    return tuple(Target(f"{module}:{attribute}", fingerprint) for module, attribute in bindings)


_CORE_LAYERS = "megatron.core.tensor_parallel.layers"
_ROPE = "megatron.core.models.common.embeddings.rope_utils"
_DISTRIB_OPTIMIZER = "megatron.core.optimizer.distrib_optimizer:DistributedOptimizer"
_PEFT_BRIDGE = "megatron.bridge.models.conversion.peft_bridge"
_OPTIMIZER = "megatron.core.optimizer.optimizer"
_FULL_GRAPH = "megatron.core.full_cuda_graph"
_DDP = "megatron.core.distributed.distributed_data_parallel:DistributedDataParallel"
_LANGUAGE_MODULE = "megatron.core.models.common.language_module.language_module:LanguageModule"
_WGRAD_BINDING_LINES = r"fused_weight_gradient_mlp_cuda|_grad_accum_fusion_available"
"""How Megatron-Core's layers bind apex's weight-gradient kernels and record whether they are there."""
_ADAPTER_NAME_LINES = r'^\s+"\.\w+\.weight": "adapter_'
"""The entries of ADAPTER_NAME_MAP (HF projection suffix -> CanonicalLoRA adapter key)."""
_FLAG_LINES = r"HAVE_TE|safe_import_from\("
"""How a Megatron-Bridge module sets its TE flags (or imports Megatron-Core's TE wrappers without one)."""

ADAPTATIONS: tuple[Adaptation, ...] = (
    Adaptation(
        name="te_absence",
        replaces="the `import transformer_engine` statements of two Megatron-Bridge modules (placeholders while "
                 "they execute) and Megatron-Bridge's HAVE_TE* flags (back to Megatron-Core's verdict)",
        why="Megatron-Bridge imports TransformerEngine unguarded; plain PyTorch images have none",
        phase="import", install="te_compat.import_megatron_bridge", not_applicable="te_compat.te_installed",
        targets=(
            Target("megatron.bridge.peft.lora_layers", "d75a8ad1f797ff4f", lines=r"transformer_engine"),
            Target("megatron.bridge.models.gpt_full_te_layer_autocast_spec", "e1c5552374a390c8",
                   lines=r"transformer_engine"),
            Target("megatron.bridge.peft.utils", "90724d60c437673d", lines=_FLAG_LINES),
            Target("megatron.bridge.peft.module_matcher", "6e7556516393b041", lines=_FLAG_LINES),
            Target("megatron.bridge.models.gemma.modeling_gemma4", "c8e16edbffec660a", lines=_FLAG_LINES),
            Target("megatron.bridge.models.gemma.gemma3_provider", "6b20ea9cb137951e", lines=_FLAG_LINES),
            Target("megatron.bridge.models.gemma_vl.modeling_gemma3_vl", "cafa92b0708ddd40", lines=_FLAG_LINES),
            Target("megatron.bridge.models.common.te_layers", "3aa3e995189ce7e9", lines=_FLAG_LINES),
            Target("megatron.bridge.models.mimo_v2_flash.modeling_mimo_v2_flash", "d8a120cd43ed3458",
                   lines=_FLAG_LINES),
        )),
    Adaptation(
        name="prebuilt_dataset_helpers",
        replaces="megatron.bridge.training.initialize.compile_helpers",
        why="the megatron-core wheel ships the compiled helpers but no Makefile: compiling them at start fails",
        phase="process", install="prebuilt_helpers.use_prebuilt_dataset_helpers",
        targets=(Target("megatron.bridge.training.initialize:compile_helpers", "7d377207e3e51a8f"),)),
    Adaptation(
        name="packed_rope",
        replaces="megatron.core rope_utils._apply_rotary_pos_emb_thd",
        why="the library's THD RoPE loops over documents in Python with two device syncs per call, and its eager "
            "rotation is a kernel per operation (one compiled kernel each way on the GPU)",
        phase="process", install="packed_rope.use_packed_rope",
        targets=(Target(f"{_ROPE}:_apply_rotary_pos_emb_thd", "63fbad0ac9769a98"),
                 Target(f"{_ROPE}:_apply_rotary_pos_emb_bshd", "f2871eee3a63dee6"),
                 Target(f"{_ROPE}:_rotate_half", "58c2db25c91f87aa"))),
    Adaptation(
        name="sync_free_grad_norm",
        replaces="Megatron's local multi-tensor l2-norm and scale fallbacks, at each of their six bindings",
        why="the fallback norm reads every tensor's norm on the host: one device sync per tensor and step",
        phase="process", install="foreach_kernels.use_foreach_kernels",
        not_applicable="foreach_kernels.not_applicable",
        targets=(*_bindings(foreach_kernels.L2_NORM_BINDINGS, "128bb632d77616dc"),
                 *_bindings(foreach_kernels.SCALE_BINDINGS, "c68dc586744c53ee"))),
    Adaptation(
        name="wgrad_accumulation_fusion",
        replaces="apex's fused_weight_gradient_mlp_cuda, where Megatron-Core's local linears look for it",
        why="without it each weight gradient is a bf16 matmul plus a second kernel adding it to the fp32 main_grad",
        phase="process", install="wgrad_accumulation.use_wgrad_kernels",
        not_applicable="wgrad_accumulation.not_applicable",
        adds=(f"{_CORE_LAYERS}:fused_weight_gradient_mlp_cuda",),
        targets=(Target(_CORE_LAYERS, "1fba698df700b504", lines=_WGRAD_BINDING_LINES),
                 Target(f"{_CORE_LAYERS}:LinearWithGradAccumulationAndAsyncCommunication.backward", "637f3aba1be7d0dd"),
                 Target(f"{_CORE_LAYERS}:ColumnParallelLinear.__init__", "a5e93c471aa3e098"),
                 Target(f"{_CORE_LAYERS}:RowParallelLinear.__init__", "239448a0d9e37f89"),
                 Target(f"{_DDP}._make_backward_post_hook", "b68d7ae8292850a2"),
                 Target(f"{_LANGUAGE_MODULE}.setup_embeddings_and_output_layer", "6280aa7c2876377e"))),
    Adaptation(
        name="fused_adam",
        replaces="megatron.core.optimizer._get_megatron_optimizer_based_on_param_groups (its torch Adam made fused)",
        why="without apex or TE Megatron-Core's Adam is torch's foreach implementation: many passes a step",
        phase="process", install="fused_adam.use_fused_adam", not_applicable="fused_adam.not_applicable",
        targets=(Target("megatron.core.optimizer:_get_megatron_optimizer_based_on_param_groups", "63b51cde127c66f0"),)),
    Adaptation(
        name="nonfinite_grad_norm",
        replaces="ChainedOptimizer.get_grad_norm (its result validated by the rerun state machine)",
        why="Megatron-Core's in-pass NaN / Inf checks read on the host each micro batch, which a step recorded as "
            "one CUDA graph cannot do; the gradient norm is read on the host before the update anyway",
        phase="process", install="grad_norm_check.use_grad_norm_check",
        targets=(Target(f"{_OPTIMIZER}:ChainedOptimizer.get_grad_norm", "a5551f40d985365c"),
                 Target(f"{_OPTIMIZER}:ChainedOptimizer.step", "1fc44060ce5832cf"),
                 Target("megatron.core.rerun_state_machine:RerunStateMachine.validate_result",
                        "b026ef4d5e93208e"))),
    Adaptation(
        name="lora_fast_path",
        replaces="ParallelLinearAdapter.forward, LoRALinearSplitQKV.forward, LoRALinearSplitFC1UpGate.forward, "
                 "LoRALinear.forward",
        why="on one tensor-parallel rank the adapters' parallel-linear machinery costs host time and does nothing, "
            "and the adapters' update can be added inside its matmul",
        phase="process", install="lora_fast_path.use_lora_fast_path",
        targets=(Target("megatron.bridge.peft.utils:ParallelLinearAdapter.forward", "96239dec75aa1b87"),
                 Target("megatron.bridge.peft.utils:ParallelLinearAdapter.__init__", "35dffb074850bdd3"),
                 Target("megatron.bridge.peft.canonical_lora:LoRALinearSplitQKV.forward", "ace98f0d6112c6fc"),
                 Target("megatron.bridge.peft.canonical_lora:LoRALinearSplitFC1UpGate.forward", "e2ff98a11353553e"),
                 Target("megatron.bridge.peft.canonical_lora:LoRALinearSplitQKV._interleave_qkv", "05a46213cffaf761"),
                 Target("megatron.bridge.peft.lora_layers:LoRALinear.forward", "8172664868ac1652"))),
    Adaptation(
        name="optimizer_resume",
        replaces="DistributedOptimizer.state_dict and ._set_main_param_and_optimizer_states (torch-Adam path)",
        why="without Apex or TE the first fails before the first step, so a distributed-optimizer checkpoint cannot "
            "resume, and the second sets Adam's step count back to 0 when a 'dp_reshardable' checkpoint resumes",
        phase="process", install="optimizer_resume.resume_before_first_step",
        not_applicable="optimizer_resume.not_applicable",
        targets=(Target(f"{_DISTRIB_OPTIMIZER}.state_dict", "51e6fd58c14ece65"),
                 Target(f"{_DISTRIB_OPTIMIZER}.load_state_dict", "cf2185bee2b74e75"),
                 Target(f"{_DISTRIB_OPTIMIZER}._set_main_param_and_optimizer_states", "3cc712951380de5b"),
                 Target(f"{_DISTRIB_OPTIMIZER}._get_main_param_and_optimizer_states", "bbc6f04e30c065ed"),
                 Target(f"{_DISTRIB_OPTIMIZER}.sharded_param_state_dp_reshardable", "f149b12d8583a538"))),
    Adaptation(
        name="listed_projection_merge",
        replaces="MegatronPeftBridge._merge_lora_adapter_weights",
        why="the library merges a fused layer's per-projection adapters only when every projection has one",
        phase="process", install="listed_projection_merge.use_listed_projection_merge",
        targets=(Target(f"{_PEFT_BRIDGE}:MegatronPeftBridge._merge_lora_adapter_weights", "af99e9a31e69589b"),
                 Target(f"{_PEFT_BRIDGE}:MegatronPeftBridge._merge_single_adapter_weight", "34bdfd23a5b9263a"),
                 Target(_PEFT_BRIDGE, "e2c1650f27aed588", lines=_ADAPTER_NAME_LINES))),
    Adaptation(
        name="swiglu_recompute",
        replaces="each dense MLP's forward (wrapped in a saved-tensor hook that finds SwiGLUFunction's node)",
        why="the SwiGLU output is kept only for FC2's backward and can be rebuilt from the input SwiGLU keeps",
        phase="model", install="swiglu_recompute.use_swiglu_recompute",
        targets=(Target("megatron.core.transformer.mlp:MLP.forward", "78bb22d62208924c"),
                 Target("megatron.core.fusions.fused_bias_swiglu:SwiGLUFunction", "0f7b87e12deba277"),
                 Target("megatron.core.fusions.fused_bias_swiglu:swiglu", "8d06f50897fded1f"),
                 Target("megatron.core.fusions.fused_bias_swiglu:bias_swiglu_impl", "cc67e56cd6dc3d0a"))),
    Adaptation(
        name="full_iteration_graph",
        replaces="FullCudaGraphWrapper's and StaticBufferLoader's class-level state (cleared when a graphed run "
                 "builds its model); each micro batch's max_seqlen (a host constant under a graph); "
                 "use_te_rng_tracker asked for without TE (Megatron-Core's graph-safe tracker answers)",
        why="the wrapper keeps its step counter, recording and static buffers on the class, and Megatron-Bridge "
            "reads max_seqlen on the host, which a recorded step cannot do from its static GPU buffer",
        phase="model", install="..cuda_graph.fresh_graph_state",
        targets=(Target(f"{_FULL_GRAPH}:FullCudaGraphWrapper", "035a5978b6c9733b"),
                 Target(f"{_FULL_GRAPH}:StaticBufferLoader", "b236a7e0fba3929e"),
                 Target("megatron.bridge.utils.cuda_graph:is_full_iteration_cuda_graph", "f9b8b73834415885"),
                 Target("megatron.bridge.training.gpt_step:get_batch_from_iterator", "fec59690bd2008e4"),
                 Target("megatron.bridge.training.utils.packed_seq_utils:get_packed_seq_params", "dcf6a0c2076e6760"),
                 Target("megatron.core.models.common.embeddings.rotary_pos_embedding:"
                        "RotaryEmbedding.get_rotary_seq_len", "3394fea46a38ed36"),
                 Target("megatron.bridge.models.gpt_provider:GPTModelProvider.provide", "4797b3d176962893"),
                 Target("megatron.core.tensor_parallel.random:initialize_rng_tracker", "770c05407d935e32"))),
    Adaptation(
        name="fp8_frozen_base",
        replaces="each frozen base linear's `_forward_impl` (LoRA with precision.fp8_frozen_base)",
        why="FP8 base weights on torch._scaled_mm for the local layer spec, where TransformerEngine is absent",
        phase="model", install="..fp8_frozen_base.use_fp8_frozen_base",
        targets=(Target(f"{_CORE_LAYERS}:linear_with_frozen_weight", "c0a7bf53a124febf"),
                 Target(f"{_CORE_LAYERS}:ColumnParallelLinear._forward_impl", "0fe4ff96726a1ecd"),
                 Target(f"{_CORE_LAYERS}:RowParallelLinear._forward_impl", "0fe4ff96726a1ecd"))),
)

BY_NAME: dict[str, Adaptation] = {entry.name: entry for entry in ADAPTATIONS}
