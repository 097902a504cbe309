"""Verifying and applying the registry's entries (entries.py).

`apply_adaptations()` is the one call that applies them (runtime.prepare_megatron makes it): it compares the
installed Megatron-Core / Megatron-Bridge with the pins, verifies every entry's targets, applies the import
and process phases, and logs what it applied. A version other than the pinned one is a warning: each entry's
fingerprints cover what it replaces and what its replacement relies on, so they decide. A target whose
fingerprint differs is a CompatError naming the entry, the target and the versions, before anything of
that entry is applied.
"""

import importlib
import importlib.metadata
import importlib.util
import logging
from dataclasses import dataclass
from enum import Enum

from .entries import ADAPTATIONS, BY_NAME, WRITTEN_FOR, Adaptation
from .fingerprint import Target, TargetMissing, found_fingerprint

log = logging.getLogger("primus_bridge")

PIN_KEYS = {"megatron-core": "MEGATRON_CORE_VERSION", "megatron-bridge": "MEGATRON_BRIDGE_VERSION"}
"""Where docker/versions.env (read by primus_bridge.doctor.pins) pins each library."""
ENTRIES_FILE = "primus_bridge/engine/megatron/compat/entries.py"


class CompatError(RuntimeError):
    """An entry's target is not what the entry was written for."""


class State(str, Enum):
    VERIFIED = "verified"
    CHANGED = "target changed"
    NOT_APPLICABLE = "not applicable"


@dataclass(frozen=True)
class EntryState:
    entry: Adaptation
    state: State
    detail: str


def installed_version(library: str) -> str | None:
    try:
        return importlib.metadata.version(library)
    except importlib.metadata.PackageNotFoundError:
        return None


def pinned_versions() -> dict[str, str]:
    """The pins of docker/versions.env for the libraries the registry adapts; empty without a pins file."""
    from ....doctor.pins import DEFAULT_VERSIONS_FILE, read_versions_file

    if not DEFAULT_VERSIONS_FILE.is_file():
        return {}
    values = read_versions_file(DEFAULT_VERSIONS_FILE)
    return {library: values[key] for library, key in PIN_KEYS.items() if key in values}


def version_differences() -> list[str]:
    """'megatron-core 0.20.0 installed, pinned 0.19.2' for each adapted library not at its pin."""
    from ....doctor.pins import same_version

    differences = []
    for library, pin in pinned_versions().items():
        found = installed_version(library)
        if found is None or not same_version(pin, found):
            differences.append(f"{library} {found or 'not'} installed, pinned {pin}")
    return differences


def _module_name(path: str) -> str:
    """The absolute name of `module` under compat, or of `..module` beside it."""
    return importlib.util.resolve_name(path if path.startswith(".") else f".{path}", __package__)


def installer_module(entry: Adaptation) -> str:
    """The module that holds the entry's code."""
    return _module_name(entry.install.rpartition(".")[0])


def _function(path: str):
    """`module.function` under compat, or `..module.function` beside it."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(_module_name(module)), name)


def target_problem(target: Target) -> str | None:
    """What differs between the target and its fingerprint, or None."""
    try:
        found = found_fingerprint(target)
    except TargetMissing as missing:
        return str(missing)
    if found == target.fingerprint:
        return None
    where = f"{target.path} (lines matching {target.lines!r})" if target.lines else target.path
    return f"{where} changed: fingerprint {found}, the entry has {target.fingerprint}"


def entry_state(entry: Adaptation) -> EntryState:
    """Whether the entry's targets are what it was written for, here."""
    absent = [library for library in entry.libraries if installed_version(library) is None]
    if absent:
        return EntryState(entry, State.NOT_APPLICABLE, f"{', '.join(absent)} not installed")
    reason = _function(entry.not_applicable)() if entry.not_applicable else None
    if reason:
        return EntryState(entry, State.NOT_APPLICABLE, reason)
    problems = [problem for target in entry.targets if (problem := target_problem(target))]
    if problems:
        return EntryState(entry, State.CHANGED, "; ".join(problems))
    return EntryState(entry, State.VERIFIED, f"{len(entry.targets)} target(s) as written for "
                      + ", ".join(f"{library} {WRITTEN_FOR[library]}" for library in entry.libraries))


def error_for(state: EntryState) -> CompatError:
    versions = ", ".join(f"{library} {installed_version(library)} installed, written for {WRITTEN_FOR[library]}"
                         for library in state.entry.libraries)
    return CompatError(f"Megatron adaptation '{state.entry.name}' ({state.entry.replaces}): {state.detail} "
                       f"[{versions}]. Install the versions pinned in constraints.txt, or re-verify the entry "
                       f"against this version and update its fingerprints in {ENTRIES_FILE} "
                       "(python -m primus_bridge.engine.megatron.compat prints them)")


def verified(name: str) -> EntryState:
    """The entry's state; CompatError when a target changed."""
    state = entry_state(BY_NAME[name])
    if state.state is State.CHANGED:
        raise error_for(state)
    return state


def import_megatron_bridge():
    """The import phase: verify and apply the import-phase entries, then import Megatron-Bridge."""
    for entry in ADAPTATIONS:
        if entry.phase == "import" and verified(entry.name).state is State.VERIFIED:
            _function(entry.install)()
    return importlib.import_module("megatron.bridge")


def _report_versions() -> None:
    differences = version_differences()
    if differences:
        log.warning("%s: the Megatron adaptations were written for the pinned versions; each one's targets are "
                    "verified before it is applied", "; ".join(differences))
    elif not pinned_versions():
        log.info("no docker/versions.env beside the package: Megatron versions not compared with the pins")


def apply_adaptations() -> list[EntryState]:
    """Compare the versions with the pins, verify every entry, apply the import and process phases (the model
    phase is installed per model by its hook) and log what was applied; returns every entry's state."""
    _report_versions()
    import_megatron_bridge()
    states = [verified(entry.name) for entry in ADAPTATIONS]
    for state in states:
        if state.entry.phase == "process" and state.state is State.VERIFIED:
            _function(state.entry.install)()
    _log_applied(states)
    return states


def _log_applied(states: list[EntryState]) -> None:
    def names(phases: tuple[str, ...]) -> str:
        return ", ".join(s.entry.name for s in states if s.state is State.VERIFIED and s.entry.phase in phases)

    skipped = "; ".join(f"{s.entry.name} ({s.detail})" for s in states if s.state is State.NOT_APPLICABLE)
    log.info("Megatron adaptations applied: %s; verified, installed per model: %s; not applicable: %s",
             names(("import", "process")) or "none", names(("model",)) or "none", skipped or "none")


def entry_states() -> list[EntryState]:
    """Every entry's state without raising (for `primus-bridge doctor`); Megatron-Bridge is imported through
    the import phase when its entries verify."""
    states = [entry_state(entry) for entry in ADAPTATIONS if entry.phase == "import"]
    if all(state.state is not State.CHANGED for state in states) and installed_version("megatron-bridge"):
        try:
            import_megatron_bridge()
        except Exception as error:  # noqa: BLE001 - reported as each bridge target's problem below
            log.debug("Megatron-Bridge does not import: %s", error)
    return states + [entry_state(entry) for entry in ADAPTATIONS if entry.phase != "import"]
