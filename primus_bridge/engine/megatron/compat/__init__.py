"""Every adaptation of Megatron-Core, Megatron-Bridge and TransformerEngine's absence, in one registry.

entries.py lists them (what each replaces, why, the versions it was written for, its targets' fingerprints,
its phase); registry.py verifies and applies them (`apply_adaptations()`, the one call); marker.py is how a
replacement is marked (`__primus_compat__`, `__primus_original__`); one module per adaptation holds its code.
Importing this package imports nothing of Megatron.
"""

from .registry import CompatError, EntryState, State, apply_adaptations, entry_states, import_megatron_bridge

__all__ = ["CompatError", "EntryState", "State", "apply_adaptations", "entry_states", "import_megatron_bridge"]
