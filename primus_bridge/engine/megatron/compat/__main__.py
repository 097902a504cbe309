"""`python -m primus_bridge.engine.megatron.compat`: every entry's state and its targets' fingerprints as found
in the installed libraries (to update entries.py after re-verifying an entry against a new version)."""

from .entries import ADAPTATIONS
from .fingerprint import TargetMissing, found_fingerprint
from .registry import entry_states, installed_version


def main() -> None:
    print(", ".join(f"{lib} {installed_version(lib)}" for lib in ("megatron-core", "megatron-bridge")))
    states = {state.entry.name: state for state in entry_states()}
    for entry in ADAPTATIONS:
        state = states[entry.name]
        print(f"{entry.name} [{entry.phase}]: {state.state.value}: {state.detail}")
        for target in entry.targets:
            try:
                found = found_fingerprint(target)
            except TargetMissing as missing:
                found = f"missing ({missing})"
            print(f"    {target.path}{' ' + repr(target.lines) if target.lines else ''}: {found}")


if __name__ == "__main__":
    main()
