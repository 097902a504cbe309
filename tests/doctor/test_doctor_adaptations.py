"""`primus-bridge doctor` lists every Megatron adaptation of the compat registry with its state."""

import inspect

import pytest

from primus_bridge.doctor.adaptations import adaptation_checks, entry_check
from primus_bridge.doctor.cli import all_checks
from primus_bridge.doctor.report import to_text
from primus_bridge.engine.megatron.compat import EntryState, State
from primus_bridge.engine.megatron.compat.entries import ADAPTATIONS, BY_NAME
from primus_bridge.engine.megatron.compat.te_compat import transformer_engine_available


@pytest.mark.skipif(transformer_engine_available(), reason="with TE the entries are checked on a GPU node only")
def test_the_report_lists_every_entry_with_its_state():
    checks = {check.name: check for check in adaptation_checks(try_import=True)}
    assert sorted(checks) == sorted(f"compat {name}" for name in BY_NAME)
    for name, check in checks.items():  # the pinned Megatron, no TE or apex: every entry verified
        assert check.status.value == "pass" and check.detail.startswith("verified"), (name, check)
    text = to_text(list(checks.values()), "cpu")
    assert all(f"PASS  compat {name}" in text for name in BY_NAME)


def test_doctor_runs_the_adaptation_checks():
    assert "adaptation_checks(" in inspect.getsource(all_checks)


def test_a_changed_target_fails_with_a_fix_and_not_applicable_is_skipped():
    entry = BY_NAME["packed_rope"]
    changed = entry_check(EntryState(entry, State.CHANGED, "rope_utils:_apply_rotary_pos_emb_thd changed"))
    assert changed.status.value == "fail" and "target changed" in changed.detail and "constraints.txt" in changed.fix
    skipped = entry_check(EntryState(entry, State.NOT_APPLICABLE, "TransformerEngine installed"))
    assert skipped.status.value == "skip" and skipped.detail.startswith("not applicable")


def test_without_a_driver_megatron_is_imported_only_where_te_is_absent():
    checks = adaptation_checks(try_import=False)
    if transformer_engine_available():
        assert [check.status.value for check in checks] == ["skip"]
    else:
        assert len(checks) == len(ADAPTATIONS)
