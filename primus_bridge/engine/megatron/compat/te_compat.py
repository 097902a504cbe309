"""Import Megatron-Bridge where TransformerEngine (TE) is not installed.

Why this module exists: Megatron-Bridge 0.6.2 imports TE unguarded at the top of two modules,
`megatron/bridge/peft/lora_layers.py` (`import transformer_engine.pytorch as te`, used in return
annotations evaluated at definition time and in isinstance checks) and
`megatron/bridge/models/gpt_full_te_layer_autocast_spec.py` (`from transformer_engine.pytorch import
TransformerLayer`). Without TE nothing of `megatron.bridge` imports. Plain PyTorch images (CUDA and
ROCm) have no TE, and the local layer spec needs none.

What it does, and nothing more:
1. While exactly those two modules execute, their own `import transformer_engine...` statements get
   placeholder classes (real classes, so `isinstance` is False; calling one raises). The placeholder
   never enters `sys.modules`, so every other module still finds TE absent.
2. Megatron-Core defines its TE wrapper classes on a `MagicMock` when TE is absent, so
   Megatron-Bridge's `safe_import_from(...)` reports them present and sets `HAVE_TE*` flags True
   (LoRA then calls `isinstance(m, <MagicMock>)`, a TypeError). Those flags are set back to
   Megatron-Core's own verdict, `HAVE_TE = False`.

Registry entry `te_absence` (import phase): the registry verifies the lines of those modules this relies on,
then calls `import_megatron_bridge()`; importing primus_bridge changes nothing.
"""

import builtins
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

TE_IMPORTERS = frozenset({
    "megatron.bridge.peft.lora_layers",
    "megatron.bridge.models.gpt_full_te_layer_autocast_spec",
})
"""The modules whose top-level TE imports get placeholders."""

TE_FLAG_MODULES = (
    "megatron.bridge.peft.utils",
    "megatron.bridge.peft.module_matcher",
    "megatron.bridge.models.gemma.modeling_gemma4",
    "megatron.bridge.models.gemma.gemma3_provider",
    "megatron.bridge.models.gemma_vl.modeling_gemma3_vl",
    "megatron.bridge.models.common.te_layers",
    "megatron.bridge.models.mimo_v2_flash.modeling_mimo_v2_flash",
)
"""Modules whose `HAVE_TE*` flags come from `safe_import_from` on Megatron-Core's TE wrappers."""


def transformer_engine_available() -> bool:
    return importlib.util.find_spec("transformer_engine") is not None


def te_installed() -> str | None:
    """Why the TE-absence entry does not apply here, or None."""
    return "TransformerEngine installed: Megatron-Bridge imports it as is" if transformer_engine_available() else None


class _AbsentMeta(type):
    """Every attribute of a placeholder is another placeholder class, so `te.ops.Sequential` resolves."""

    def __getattr__(cls, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return _absent(f"{cls.__qualname__}.{name}")


def _absent(qualname: str) -> type:
    def refuse(*_args, **_kwargs):
        raise RuntimeError(f"{qualname} needs TransformerEngine, which is not installed; "
                           "use model.transformer_impl: local")

    return _AbsentMeta(qualname.rsplit(".", 1)[-1], (), {"__qualname__": qualname, "__new__": refuse})


class _PlaceholderModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _absent(f"{self.__name__}.{name}")


def _placeholder_te() -> types.ModuleType:
    top = _PlaceholderModule("transformer_engine")
    top.pytorch = _PlaceholderModule("transformer_engine.pytorch")
    return top


def _import_with_placeholder_te(name, globals=None, locals=None, fromlist=(), level=0):
    """`__import__` for the two TE importers: TE names resolve to placeholders, others import normally."""
    if level == 0 and (name == "transformer_engine" or name.startswith("transformer_engine.")):
        top = _placeholder_te()
        if fromlist and name == "transformer_engine.pytorch":
            return top.pytorch
        return top
    return builtins.__import__(name, globals, locals, fromlist, level)


class _PlaceholderTELoader(importlib.abc.Loader):
    """Runs a TE importer with its own `__import__`, then gives it back the normal builtins."""

    def __init__(self, inner: importlib.abc.Loader):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__dict__["__builtins__"] = {**builtins.__dict__, "__import__": _import_with_placeholder_te}
        try:
            self.inner.exec_module(module)
        finally:
            module.__dict__["__builtins__"] = builtins


class _TEImporterFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in TE_IMPORTERS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _PlaceholderTELoader(spec.loader)
        return spec


def _install_finder() -> None:
    if not any(isinstance(finder, _TEImporterFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _TEImporterFinder())


def clear_te_flags() -> list[str]:
    """Set Megatron-Bridge's `HAVE_TE*` flags to Megatron-Core's verdict (False); returns those changed."""
    from megatron.core.extensions import transformer_engine as mcore_te

    changed = []
    for module_name in TE_FLAG_MODULES:
        module = sys.modules.get(module_name)
        if module is None:
            module = importlib.import_module(module_name)
        for attr, value in vars(module).copy().items():
            if attr.startswith("HAVE_TE") and value is True and not mcore_te.HAVE_TE:
                setattr(module, attr, False)
                changed.append(f"{module_name}.{attr}")
    return changed


def import_megatron_bridge() -> types.ModuleType:
    """Import `megatron.bridge`, with the two TE placeholders and corrected flags when TE is absent."""
    if transformer_engine_available():
        return importlib.import_module("megatron.bridge")
    _install_finder()
    bridge = importlib.import_module("megatron.bridge")
    clear_te_flags()
    return bridge
