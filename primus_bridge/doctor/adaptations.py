"""The Megatron adaptations (primus_bridge/engine/megatron/compat): one line per registry entry and its state here.

An entry whose targets match the fingerprints it was written with passes; one that does not apply here (TE or
apex installed, Megatron absent) is skipped; one whose target changed fails: training would refuse to start.
"""

import contextlib
import sys

from .report import Check, Status

CHANGED_FIX = ("install the Megatron-Core / Megatron-Bridge versions pinned in constraints.txt, or re-verify the "
               "entry against this version (primus_bridge/engine/megatron/compat/entries.py)")


def entry_check(state) -> Check:
    """One registry entry's state (compat.EntryState) as a doctor check."""
    from ..engine.megatron.compat import State

    name = f"compat {state.entry.name}"
    if state.state is State.VERIFIED:
        return Check(name, Status.PASS, f"verified ({state.entry.phase} phase): {state.detail}")
    if state.state is State.NOT_APPLICABLE:
        return Check(name, Status.SKIP, f"not applicable: {state.detail}")
    return Check(name, Status.FAIL, f"target changed: {state.detail}", CHANGED_FIX)


def adaptation_checks(try_import: bool) -> list[Check]:
    """Every registry entry. Megatron-Bridge is imported to check them, except where TransformerEngine is
    installed and no GPU driver is (TE loads the driver at import)."""
    from ..engine.megatron.compat import entry_states
    from ..engine.megatron.compat.te_compat import transformer_engine_available

    if not try_import and transformer_engine_available():
        return [Check("compat", Status.SKIP, "Megatron adaptations not checked: importing Megatron-Bridge with "
                                             "TransformerEngine needs the GPU driver; run doctor on a GPU node")]
    with contextlib.redirect_stdout(sys.stderr):  # the libraries log at import; stdout is the report (--json)
        states = entry_states()
    return [entry_check(state) for state in states]
