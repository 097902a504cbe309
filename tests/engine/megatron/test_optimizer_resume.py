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


def _stepped_adam(count: int) -> tuple[torch.optim.AdamW, torch.nn.Parameter]:
    main = torch.nn.Parameter(torch.ones(3, 2))
    adam = torch.optim.AdamW([main], lr=1e-3)
    for _ in range(count):
        main.grad = torch.randn_like(main)
        adam.step()
    return adam, main


def _distributed_optimizer(adam: torch.optim.AdamW, model_param: torch.nn.Parameter):
    """Megatron-Core's DistributedOptimizer holding `adam`, with what `_set_main_param_and_optimizer_states` reads:
    its constructor needs CUDA, the method only the inner optimizer, its config and the parameter's place."""
    from megatron.core.optimizer import OptimizerConfig

    optimizer = object.__new__(distrib_optimizer.DistributedOptimizer)
    optimizer.optimizer, optimizer.config = adam, OptimizerConfig(optimizer="adam", lr=1e-3, bf16=True)
    optimizer.model_param_group_index_map = {model_param: (0, 0)}
    return optimizer


def test_copying_the_parameter_state_back_keeps_the_step_count_of_the_checkpoint():
    """A 'dp_reshardable' load hands `_set_main_param_and_optimizer_states` each parameter's state with 'step' the
    placeholder 0 of the optimizer being loaded, after the param groups set the checkpoint's count (4 here): the
    count stays 4, in a tensor of the parameter's own, and the main parameter and the moments become the checkpoint's.
    Megatron-Core's own method sets it to 0, which restarted Adam's bias correction on every resume."""
    model_param = torch.nn.Parameter(torch.ones(3, 2, dtype=torch.bfloat16))
    saved = {"param": torch.full((3, 2), 2.0), "step": torch.tensor(0.0), "exp_avg": torch.full((3, 2), 0.1),
             "exp_avg_sq": torch.full((3, 2), 0.01)}
    for set_states, count in ((distrib_optimizer.DistributedOptimizer._set_main_param_and_optimizer_states, 4),
                              (library_original(
                                  distrib_optimizer.DistributedOptimizer._set_main_param_and_optimizer_states), 0)):
        adam, main = _stepped_adam(4)
        shared = adam.state[main]["step"]  # on the foreach path one tensor is every parameter's count
        with torch.no_grad():  # as Megatron-Bridge loads
            set_states(_distributed_optimizer(adam, model_param), model_param, dict(saved))
        state = adam.state[main]
        assert state["step"].item() == count and (state["step"] is shared) == (count == 0)
        assert torch.equal(main.detach(), saved["param"]) and torch.equal(state["exp_avg"], saved["exp_avg"])
        assert torch.equal(state["exp_avg_sq"], saved["exp_avg_sq"])
    assert installed_by(distrib_optimizer.DistributedOptimizer._set_main_param_and_optimizer_states) == ENTRY
