"""The compat registry: every adaptation of Megatron is found from it, each one's targets match the installed
libraries, and a target that changed fails loudly, naming the entry and the versions."""

import importlib
import importlib.util
import logging
from pathlib import Path

import pytest

import primus_bridge
from primus_bridge.engine.megatron.compat import CompatError, State, apply_adaptations, entry_states, registry
from primus_bridge.engine.megatron.compat import fingerprint, foreach_kernels, te_compat
from primus_bridge.engine.megatron.compat.entries import ADAPTATIONS, BY_NAME, PHASES, WRITTEN_FOR
from primus_bridge.engine.megatron.compat.marker import installed_by, library_original, replace_once

COMPAT = Path(registry.__file__).parent
INFRASTRUCTURE = {"__init__", "__main__", "entries", "registry", "marker", "fingerprint"}
REPLACEMENT_SIGNS = ("__wrapped__", "sys.meta_path", "__builtins__", "wrap_once", ".forward = ", "_forward_impl = ")


def test_every_entry_matches_the_installed_libraries(megatron_cpu):
    states = entry_states()
    assert sorted(state.entry.name for state in states) == sorted(BY_NAME)
    assert [f"{s.entry.name}: {s.detail}" for s in states if s.state is State.CHANGED] == []
    if not te_compat.transformer_engine_available():  # no TE, no apex here: every entry applies
        assert {state.entry.name: state.state for state in states} == dict.fromkeys(BY_NAME, State.VERIFIED)


def test_entries_were_written_for_the_pinned_versions():
    """Bumping a pin (docker/versions.env, constraints.txt) means re-verifying every entry."""
    assert registry.pinned_versions() == WRITTEN_FOR
    assert all(set(entry.libraries) <= set(WRITTEN_FOR) for entry in ADAPTATIONS)


def test_every_entry_says_what_why_when_and_how():
    for entry in ADAPTATIONS:
        assert entry.replaces and entry.why and entry.targets and entry.phase in PHASES, entry.name
        assert all(len(target.fingerprint) == 16 for target in entry.targets), entry.name
        assert callable(registry._function(entry.install)), entry.name
        assert entry.not_applicable is None or callable(registry._function(entry.not_applicable)), entry.name
    assert len(BY_NAME) == len(ADAPTATIONS)


def test_every_adaptation_module_is_an_entry_and_nothing_else_replaces_library_code():
    modules = {path.stem for path in COMPAT.glob("*.py")} - INFRASTRUCTURE
    assert modules <= {entry.install.rsplit(".", 1)[0] for entry in ADAPTATIONS}
    package = Path(primus_bridge.__file__).parent
    registered = {Path(importlib.util.find_spec(registry.installer_module(entry)).origin).resolve()
                  for entry in ADAPTATIONS}
    outside = [f"{path.relative_to(package)}: {sign}" for path in package.rglob("*.py")
               if COMPAT not in path.parents and path.resolve() not in registered
               for sign in REPLACEMENT_SIGNS if sign in path.read_text()]
    assert outside == []


def test_the_targets_cover_every_module_and_binding_the_adaptations_change():
    assert {target.module for target in BY_NAME["te_absence"].targets} \
        == set(te_compat.TE_IMPORTERS) | set(te_compat.TE_FLAG_MODULES)
    bindings = (*foreach_kernels.L2_NORM_BINDINGS, *foreach_kernels.SCALE_BINDINGS)
    assert {target.path for target in BY_NAME["sync_free_grad_norm"].targets} == {f"{m}:{a}" for m, a in bindings}


def test_applied_replacements_carry_the_entrys_marker(megatron_cpu):
    for entry in ADAPTATIONS:
        if entry.phase != "process":
            continue
        values = [fingerprint.resolve(target.path) for target in entry.targets if target.lines is None]
        added = [fingerprint.resolve(path) for path in entry.adds]
        assert all(installed_by(value) == entry.name for value in added), entry.name
        marked = {installed_by(value) for value in values + added} - {None}
        assert marked == {entry.name}, entry.name
        assert all(installed_by(library_original(value)) is None for value in values)


def _different(x, scale=1.0):
    return x


@pytest.mark.parametrize("entry,module,owner,attribute", [
    ("packed_rope", "megatron.core.models.common.embeddings.rope_utils", None, "_apply_rotary_pos_emb_thd"),
    ("sync_free_grad_norm", "megatron.core.optimizer.clip_grads", None, "l2_norm_impl"),
    ("lora_fast_path", "megatron.bridge.peft.utils", "ParallelLinearAdapter", "forward"),
    ("optimizer_resume", "megatron.core.optimizer.distrib_optimizer", "DistributedOptimizer", "load_state_dict"),
    ("swiglu_recompute", "megatron.core.fusions.fused_bias_swiglu", None, "swiglu"),
    ("fp8_frozen_base", "megatron.core.tensor_parallel.layers", "RowParallelLinear", "_forward_impl"),
    ("wgrad_accumulation_fusion", "megatron.core.tensor_parallel.layers", "ColumnParallelLinear", "__init__"),
    ("fused_adam", "megatron.core.optimizer", None, "_get_megatron_optimizer_based_on_param_groups"),
])
def test_a_changed_signature_fails_loudly(megatron_cpu, monkeypatch, entry, module, owner, attribute):
    holder = importlib.import_module(module)
    holder = getattr(holder, owner) if owner else holder
    monkeypatch.setattr(holder, attribute, _different)
    library = BY_NAME[entry].libraries[0]
    with pytest.raises(CompatError) as raised:
        apply_adaptations()
    message = str(raised.value)
    assert f"'{entry}'" in message and f"{attribute} changed" in message
    assert f"{library} {registry.installed_version(library)} installed, written for {WRITTEN_FOR[library]}" in message
    assert getattr(holder, attribute) is _different  # nothing of a failing registry is applied


def test_a_vanished_binding_fails_loudly(megatron_cpu, monkeypatch):
    from megatron.core.optimizer import optimizer

    monkeypatch.delattr(optimizer, "multi_tensor_scale_impl")
    with pytest.raises(CompatError, match=r"'sync_free_grad_norm'.*optimizer:multi_tensor_scale_impl does not exist"):
        apply_adaptations()


def test_a_changed_te_import_fails_before_megatron_bridge_is_imported(monkeypatch, tmp_path):
    """The TE-absence targets are lines of module files, read without importing them."""
    original = fingerprint.module_file("megatron.bridge.peft.lora_layers")
    changed = tmp_path / "lora_layers.py"
    changed.write_text(original.read_text() + "\nfrom transformer_engine.pytorch import Linear\n")
    real = fingerprint.module_file
    monkeypatch.setattr(fingerprint, "module_file", lambda module: changed if module.endswith("lora_layers")
                        else real(module))
    monkeypatch.setattr(te_compat, "transformer_engine_available", lambda: False)
    with pytest.raises(CompatError, match=r"'te_absence'.*lora_layers \(lines matching 'transformer_engine'\) "
                                          r"changed.*megatron-bridge .* installed, written for 0\.6\.2"):
        registry.import_megatron_bridge()


def test_replace_once_goes_by_the_projects_marker_not_wrapped():
    """A library function made with functools.wraps carries `__wrapped__`: it is still replaced, once."""
    def library(x):
        return x

    library.__wrapped__ = print
    owner = type("Owner", (), {"f": staticmethod(library)})

    def make(original):
        return lambda x: original(x) + 1

    replaced = replace_once("demo", owner, "f", make)
    assert owner.f is replaced and owner.f(1) == 2
    assert installed_by(replaced) == "demo" and library_original(replaced) is library
    assert replace_once("demo", owner, "f", make) is replaced


def test_apply_compares_the_versions_and_logs_what_it_applied(megatron_cpu, monkeypatch, caplog):
    real = registry.installed_version
    monkeypatch.setattr(registry, "installed_version", lambda lib: "0.99.0" if lib == "megatron-core" else real(lib))
    with caplog.at_level(logging.INFO, logger="primus_bridge"):
        states = apply_adaptations()
    assert "megatron-core 0.99.0 installed, pinned 0.19.2" in caplog.text  # a warning: the fingerprints decide
    messages = [record.getMessage() for record in caplog.records]
    applied = [message for message in messages if "Megatron adaptations applied" in message]
    assert len(applied) == 1
    for state in states:
        if state.state is State.VERIFIED:
            assert state.entry.name in applied[0]
