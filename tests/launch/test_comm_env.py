"""RCCL/NCCL defaults: what is applied per vendor, RDMA device detection, and the user's values kept."""

from primus_bridge.launch.comm_env import active_ib_devices, comm_settings


def make_device(root, name, *states):
    for port, state in enumerate(states, start=1):
        folder = root / name / "ports" / str(port)
        folder.mkdir(parents=True)
        (folder / "state").write_text(state + "\n")


def as_dict(settings):
    return {s.name: (s.value, s.reason) for s in settings}


def test_active_rdma_devices_only(tmp_path):
    make_device(tmp_path, "mlx5_0", "4: ACTIVE")
    make_device(tmp_path, "mlx5_1", "1: DOWN")
    make_device(tmp_path, "bnxt_re0", "1: DOWN", "4: ACTIVE")
    assert active_ib_devices(tmp_path) == ["bnxt_re0", "mlx5_0"]
    assert active_ib_devices(tmp_path / "missing") == []


def test_rocm_defaults_and_ib_hca(tmp_path):
    make_device(tmp_path, "mlx5_0", "4: ACTIVE")
    settings = as_dict(comm_settings({}, "rocm", None, ib_root=tmp_path))
    assert settings["NCCL_IB_HCA"][0] == "mlx5_0"
    for name in ("HSA_NO_SCRATCH_RECLAIM", "HIP_FORCE_DEV_KERNARG", "TORCH_NCCL_HIGH_PRIORITY",
                 "CUDA_DEVICE_MAX_CONNECTIONS"):
        assert settings[name][0] == "1", name
    assert "NCCL_SOCKET_IFNAME" not in settings


def test_cuda_has_no_rocm_settings(tmp_path):
    settings = as_dict(comm_settings({}, "cuda", None, ib_root=tmp_path))
    assert "HSA_NO_SCRATCH_RECLAIM" not in settings and "NCCL_IB_HCA" not in settings
    assert settings["CUDA_DEVICE_MAX_CONNECTIONS"][0] == "1"


def test_cpu_build_gets_nothing(tmp_path):
    make_device(tmp_path, "mlx5_0", "4: ACTIVE")
    assert comm_settings({}, "none", None, ib_root=tmp_path) == []


def test_user_values_are_kept(tmp_path):
    make_device(tmp_path, "mlx5_0", "4: ACTIVE")
    env = {"NCCL_IB_HCA": "=mlx5_4", "NCCL_DEBUG": "INFO", "NCCL_SOCKET_IFNAME": "ens1"}
    settings = as_dict(comm_settings(env, "rocm", None, ib_root=tmp_path))
    assert settings["NCCL_IB_HCA"] == ("=mlx5_4", "set by you")
    assert settings["NCCL_DEBUG"] == ("INFO", "set by you")
    assert settings["GLOO_SOCKET_IFNAME"][0] == "ens1"


def test_socket_ifname_flag_sets_both(tmp_path):
    settings = as_dict(comm_settings({"NCCL_SOCKET_IFNAME": "old"}, "cuda", "ib0", ib_root=tmp_path))
    assert settings["NCCL_SOCKET_IFNAME"][0] == settings["GLOO_SOCKET_IFNAME"][0] == "ib0"
