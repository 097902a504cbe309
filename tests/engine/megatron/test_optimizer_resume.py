"""The torch-Adam DistributedOptimizer can build its state dict before its first step (needed to resume)."""

import torch

from primus_bridge.engine.megatron.runtime import prepare_megatron

prepare_megatron()
from megatron.core.optimizer import distrib_optimizer  # noqa: E402

from primus_bridge.engine.megatron.compat.marker import installed_by, library_original  # noqa: E402
from primus_bridge.engine.megatron.compat.optimizer_resume import (  # noqa: E402
    ENTRY, resume_before_first_step, unstepped_state_dict,
)


def _adam() -> torch.optim.AdamW:
    weights, norms = torch.nn.Parameter(torch.ones(3, 2)), torch.nn.Parameter(torch.ones(2))
    return torch.optim.AdamW([{"params": [weights], "weight_decay": 0.1, "lr_mult": 1.0},
                              {"params": [norms], "weight_decay": 0.0, "lr_mult": 1.0}], lr=1e-3)


def test_unstepped_state_dict_has_the_groups_without_params_and_step_zero():
    adam = _adam()
    state = unstepped_state_dict(adam, grad_scaler=None)
    assert set(state) == {"optimizer"} and set(state["optimizer"]) == {"param_groups"}
    groups = state["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert all("params" not in g and g["step"] == 0.0 for g in groups)
    assert all(g["lr"] == 1e-3 for g in groups)


def test_step_zero_is_what_torch_adam_counts_from():
    """After one real step torch's Adam holds step 1 for every parameter: the counter started at 0."""
    adam = _adam()
    for group in adam.param_groups:
        for param in group["params"]:
            param.grad = torch.ones_like(param)
    adam.step()
    assert {s["step"].item() for s in adam.state_dict()["state"].values()} == {1.0}


def test_only_the_torch_adam_path_is_wrapped_and_only_once():
    wrapped = distrib_optimizer.DistributedOptimizer.state_dict
    assert installed_by(wrapped) == ENTRY, "no Apex/TE here: the torch-Adam path needs it"
    resume_before_first_step()
    assert distrib_optimizer.DistributedOptimizer.state_dict is wrapped
    assert installed_by(library_original(wrapped)) is None
    assert not distrib_optimizer.HAVE_APEX_OR_TE
