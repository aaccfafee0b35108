"""The simulator: pynvml's surface, the MIG rules per architecture, the shared host file."""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pynvml
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrestore import caps, holders
from migrestore.errors import ConfigError
from migrestore.model import MigMode, Placement
from migrestore.profiles import catalogue, find_model
from migrestore.simulator import (
    DEFAULT_LATENCY,
    NVML_FUNCTIONS,
    ResetRefused,
    Simulator,
    attach,
    counters,
    detach,
    init_host,
    inject_fault,
    load_driver,
    models,
    reboot,
    reset_counters,
    reset_gpus,
    set_latency,
    set_persistence,
    unload_driver,
)
from migrestore.simulator import rules as simrules

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
H200, A100, A30, RTX = (
    "NVIDIA H200",
    "NVIDIA A100-SXM4-40GB",
    "NVIDIA A30",
    "NVIDIA RTX PRO 6000 Blackwell Server Edition",
)


def new_host(
    tmp_path: Path, *gpus: tuple[str, int], sysroot: bool = False, persistence: bool = False
) -> Path:
    """A fresh simulated host in tmp_path; persistence mode off unless asked for (it blocks the
    resets these tests make; see test_persistence_blocks_resets_but_not_a_hopper_mode_change)."""
    state = tmp_path / "host.json"
    init_host(state, list(gpus), sysroot=tmp_path / "root" if sysroot else None)
    if not persistence:
        for index in range(sum(count for _, count in gpus)):
            set_persistence(state, index, False)
    return state


def opened(state: Path) -> Simulator:
    """A simulator over `state` with NVML initialised."""
    nvml = Simulator(state)
    nvml.nvmlInit()
    return nvml


def mig_on(nvml: Simulator, index: int = 0) -> Any:
    """GPU `index` with MIG enabled (Hopper and later: at once)."""
    dev = nvml.nvmlDeviceGetHandleByIndex(index)
    assert nvml.nvmlDeviceSetMigMode(dev, nvml.NVML_DEVICE_MIG_ENABLE) == nvml.NVML_SUCCESS
    return dev


def mig_on_after_reset(nvml: Simulator, state: Path) -> Any:
    """GPU 0 with MIG enabled on any architecture: set the mode, reset with NVML shut down."""
    dev = nvml.nvmlDeviceGetHandleByIndex(0)
    nvml.nvmlDeviceSetMigMode(dev, 1)
    nvml.nvmlShutdown()
    reset_gpus(state, ["00000000:07:00.0"])
    nvml.nvmlInit()
    return dev


def where(nvml: Simulator, start: int, size: int) -> Any:
    """A placement as the adapter passes it: a pointer to the pynvml struct."""
    placement = nvml.c_nvmlGpuInstancePlacement_t()
    placement.start, placement.size = start, size
    return ctypes.pointer(placement)


def size_of(model: str, profile_id: int) -> int:
    """The placement size of a GI profile."""
    found = find_model(model)
    assert found is not None
    profile = found.table.gi_by_id(profile_id)
    assert profile is not None
    return profile.placements[0].size


def create(nvml: Simulator, dev: Any, model: str, profile_id: int, start: int | None = None) -> int:
    """Create a GPU instance (at `start`, or where the driver likes); its id."""
    if start is None:
        gi = nvml.nvmlDeviceCreateGpuInstance(dev, profile_id)
    else:
        placement = where(nvml, start, size_of(model, profile_id))
        gi = nvml.nvmlDeviceCreateGpuInstanceWithPlacement(dev, profile_id, placement)
    gi_id: int = nvml.nvmlGpuInstanceGetInfo(gi).id
    return gi_id


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python code in another process (the project root on its path)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# ---- the pynvml surface ----


def test_calls_need_nvml_init(tmp_path: Path) -> None:
    """Before nvmlInit and after the last nvmlShutdown every call is Uninitialized."""
    nvml = Simulator(new_host(tmp_path, (H200, 1)))
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nvml.nvmlDeviceGetCount()
    nvml.nvmlInit()
    assert nvml.nvmlDeviceGetCount() == 1
    nvml.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nvml.nvmlDeviceGetCount()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nvml.nvmlShutdown()


def test_reexports_pynvml(tmp_path: Path) -> None:
    """Constants, struct types and error classes are pynvml's own objects."""
    nvml = Simulator(new_host(tmp_path, (H200, 1)))
    assert nvml.SIMULATED is True
    assert nvml.NVMLError_InUse is pynvml.NVMLError_InUse
    assert nvml.NVML_DEVICE_MIG_ENABLE == 1
    assert nvml.c_nvmlGpuInstancePlacement_t is pynvml.c_nvmlGpuInstancePlacement_t
    assert nvml.NVML_GPU_INSTANCE_PROFILE_COUNT == pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT


def test_unmodelled_function_never_reaches_a_driver(tmp_path: Path) -> None:
    """A pynvml call the simulator does not model fails with FunctionNotFound."""
    nvml = opened(new_host(tmp_path, (H200, 1)))
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        nvml.nvmlDeviceGetBoardPartNumber(nvml.nvmlDeviceGetHandleByIndex(0))


def test_modelled_functions_are_the_latency_tables() -> None:
    """NVML_FUNCTIONS (and so the latency model) lists exactly the calls Simulator defines."""
    defined = {name for name in vars(Simulator) if name.startswith("nvml")}
    aliases = {name for name in defined if getattr(Simulator, name).__name__ != name}
    assert defined - aliases == NVML_FUNCTIONS
    assert set(DEFAULT_LATENCY) == NVML_FUNCTIONS | {"reset_gpus"}


def test_return_codes_are_nvmls() -> None:
    """The simulator's return codes have nvml.h's values."""
    for code in simrules.Ret:
        assert getattr(pynvml, f"NVML_{'ERROR_' if code else ''}{code.name}") == code


def test_handles_are_ctypes_pointers(tmp_path: Path) -> None:
    """Handles round-trip through ctypes arrays and struct fields like real ones."""
    nvml = opened(new_host(tmp_path, (H200, 2)))
    devs = (nvml.c_nvmlDevice_t * 2)()
    devs[0], devs[1] = nvml.nvmlDeviceGetHandleByIndex(0), nvml.nvmlDeviceGetHandleByIndex(1)
    assert [nvml.nvmlDeviceGetIndex(d) for d in devs] == [0, 1]
    gi = nvml.nvmlDeviceCreateGpuInstance(mig_on(nvml, 1), 0)
    parent = nvml.nvmlGpuInstanceGetInfo(gi).device
    assert nvml.nvmlDeviceGetIndex(parent) == 1
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceGetIndex(gi)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceGetIndex(nvml.c_nvmlDevice_t())


def test_count_out_parameter_conventions(tmp_path: Path) -> None:
    """The count may be a pointer or a byref; a short array fails with InsufficientSize."""
    nvml = opened(new_host(tmp_path, (H200, 1)))
    dev = nvml.nvmlDeviceGetHandleByIndex(0)
    count = ctypes.c_uint(0)
    nvml.nvmlDeviceGetGpuInstancePossiblePlacements(dev, 19, None, ctypes.byref(count))
    assert count.value == 7
    short = (nvml.c_nvmlGpuInstancePlacement_t * 3)()
    with pytest.raises(pynvml.NVMLError_InsufficientSize):
        nvml.nvmlDeviceGetGpuInstancePossiblePlacements(dev, 19, short, ctypes.pointer(count))


def test_state_file_says_simulated(tmp_path: Path) -> None:
    """The host file declares itself simulated."""
    state = new_host(tmp_path, (H200, 1))
    assert json.loads(state.read_text())["simulated"] is True


def test_missing_or_foreign_state_file_is_a_config_error(tmp_path: Path) -> None:
    """A simulator over no host, or over a file that is no host, fails naming the file."""
    with pytest.raises(ConfigError, match=r"nothing\.json: no simulated host"):
        Simulator(tmp_path / "nothing.json")
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    with pytest.raises(ConfigError, match=r"other\.json: not a simulated host state file"):
        Simulator(tmp_path / "other.json")


def test_unknown_model_names_the_known_ones(tmp_path: Path) -> None:
    """An unknown model is a ConfigError that names it and lists the catalogue."""
    with pytest.raises(ConfigError, match=r"'V100'.*NVIDIA H200"):
        init_host(tmp_path / "host.json", [("V100", 1)])


def test_identities_are_dgx_like_and_deterministic(tmp_path: Path) -> None:
    """UUIDs are distinct and stable per host file; buses follow a DGX; minor = index."""
    state = new_host(tmp_path, (H200, 8), (A30, 1))
    nvml = opened(state)
    devs = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(9)]
    uuids = [nvml.nvmlDeviceGetUUID(d) for d in devs]
    buses = [nvml.nvmlDeviceGetPciInfo(d).busId for d in devs]
    assert len(set(uuids)) == 9
    assert [b.split(":")[1] for b in buses[:8]] == ["07", "0F", "47", "4E", "87", "90", "B7", "BD"]
    assert len(set(buses)) == 9
    assert [nvml.nvmlDeviceGetMinorNumber(d) for d in devs] == list(range(9))
    init_host(state, [(H200, 8), (A30, 1)])
    again = opened(state)
    assert [again.nvmlDeviceGetUUID(again.nvmlDeviceGetHandleByIndex(i)) for i in range(9)] == uuids


def test_handle_lookup_by_pci_and_uuid(tmp_path: Path) -> None:
    """Bus ids are accepted in the legacy form; MIG UUIDs in both formats."""
    nvml = opened(new_host(tmp_path, (H200, 2)))
    dev = nvml.nvmlDeviceGetHandleByPciBusId("0000:0f:00.0")
    assert nvml.nvmlDeviceGetIndex(dev) == 1
    gi = nvml.nvmlDeviceCreateGpuInstance(mig_on(nvml, 1), 0)
    nvml.nvmlGpuInstanceCreateComputeInstance(gi, 4)
    mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(dev, 0)
    gpu_uuid, mig_uuid = nvml.nvmlDeviceGetUUID(dev), nvml.nvmlDeviceGetUUID(mig)
    for name in (mig_uuid, f"MIG-{gpu_uuid}/0/0"):
        assert nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByUUID(name)) == mig_uuid


def test_list_calls_fill_handle_arrays(tmp_path: Path) -> None:
    """GetGpuInstances / GetComputeInstances fill ctypes arrays with usable handles."""
    nvml = opened(new_host(tmp_path, (H200, 1)))
    dev = mig_on(nvml)
    for start in (6, 0):
        create(nvml, dev, H200, 19, start)
    count = ctypes.c_uint(0)
    gis = (nvml.c_nvmlGpuInstance_t * 7)()
    nvml.nvmlDeviceGetGpuInstances(dev, 19, gis, ctypes.pointer(count))
    assert [nvml.nvmlGpuInstanceGetInfo(g).id for g in gis[: count.value]] == [7, 13]
    nvml.nvmlGpuInstanceCreateComputeInstance(gis[1], 0)
    cis = (nvml.c_nvmlComputeInstance_t * 1)()
    nvml.nvmlGpuInstanceGetComputeInstances(gis[1], 0, cis, ctypes.pointer(count))
    info = nvml.nvmlComputeInstanceGetInfo(cis[0])
    assert (count.value, info.id, nvml.nvmlGpuInstanceGetInfo(info.gpuInstance).id) == (1, 0, 13)


def test_driver_version_decides_the_profile_index_range(tmp_path: Path) -> None:
    """R580 stops GI profile indices at 17 (InvalidArgument); R595 knows index 17 too."""
    for driver, error in [("580.159.04", pynvml.NVMLError_InvalidArgument), ("595.45.04", None)]:
        state = tmp_path / f"{driver}.json"
        init_host(state, [(H200, 1)], driver=driver)
        nvml = Simulator(state)
        nvml.nvmlInitWithFlags(0)
        dev = nvml.nvmlDeviceGetHandleByIndex(0)
        assert nvml.nvmlSystemGetNVMLVersion() == f"13.{driver}"
        with pytest.raises(error or pynvml.NVMLError_NotSupported):
            nvml.nvmlDeviceGetGpuInstanceProfileInfo(dev, 17)
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            nvml.nvmlDeviceGetGpuInstanceProfileInfo(dev, 18)


# ---- MIG mode, reset, reboot ----


def test_hopper_mode_applies_at_once_but_not_while_a_client_holds_the_gpu(tmp_path: Path) -> None:
    """Hopper: SetMigMode takes effect immediately; with a driver client attached it is refused
    (IN_USE, the mode unchanged: the safe assumption); asking for the mode it has is no change."""
    state = new_host(tmp_path, (H200, 1))
    attach(state, 0, "nvsm")
    nvml = opened(state)
    dev = nvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_InUse):
        nvml.nvmlDeviceSetMigMode(dev, 1)
    assert nvml.nvmlDeviceGetMigMode(dev) == [0, 0]
    assert nvml.nvmlDeviceSetMigMode(dev, 0) == 0
    detach(state, 0, "nvsm")
    assert nvml.nvmlDeviceSetMigMode(dev, 1) == 0
    assert nvml.nvmlDeviceGetMigMode(dev) == [1, 1]
    assert nvml.nvmlDeviceSetMigMode(dev, 0) == 0
    assert nvml.nvmlDeviceGetMigMode(dev) == [0, 0]


def test_persistence_blocks_resets_but_not_a_hopper_mode_change(tmp_path: Path) -> None:
    """Persistence mode, on per GPU as on the real H200, holds the GPU: Ampere's activation is
    IN_USE and nvidia-smi -r is refused until it is off for that GPU; Hopper changes mode with it
    on. Each GPU has its own; set and read through NVML; a reboot turns it on again."""
    state = new_host(tmp_path, (A100, 2), (H200, 1), persistence=True)
    nvml = opened(state)
    a100, other, h200 = (nvml.nvmlDeviceGetHandleByIndex(i) for i in range(3))
    assert [nvml.nvmlDeviceGetPersistenceMode(d) for d in (a100, other, h200)] == [1, 1, 1]
    assert nvml.nvmlDeviceSetMigMode(a100, 1) == pynvml.NVML_ERROR_IN_USE
    assert nvml.nvmlDeviceSetMigMode(h200, 1) == pynvml.NVML_SUCCESS
    assert nvml.nvmlDeviceGetMigMode(h200) == [1, 1]
    nvml.nvmlDeviceSetPersistenceMode(a100, pynvml.NVML_FEATURE_DISABLED)
    assert [nvml.nvmlDeviceGetPersistenceMode(d) for d in (a100, other, h200)] == [0, 1, 1]
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceSetPersistenceMode(a100, 2)
    nvml.nvmlShutdown()
    with pytest.raises(ResetRefused, match=r"00000000:0F:00.0.*persistence mode is on"):
        reset_gpus(state, ["00000000:07:00.0", "00000000:0F:00.0"])
    reset_gpus(state, ["00000000:07:00.0"])
    nvml.nvmlInit()
    assert nvml.nvmlDeviceGetMigMode(a100) == [1, 1]
    reboot(state)
    assert [nvml.nvmlDeviceGetPersistenceMode(d) for d in (a100, other, h200)] == [1, 1, 1]


def test_ampere_mode_waits_for_a_reset(tmp_path: Path) -> None:
    """Ampere: the change stays pending (no GIs yet) until the GPU is reset."""
    state = new_host(tmp_path, (A100, 1))
    nvml = opened(state)
    dev = nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml.nvmlDeviceSetMigMode(dev, 1) == pynvml.NVML_SUCCESS
    assert nvml.nvmlDeviceGetMigMode(dev) == [0, 1]
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nvml.nvmlDeviceCreateGpuInstance(dev, 19)
    bus = nvml.nvmlDeviceGetPciInfo(dev).busId
    nvml.nvmlShutdown()
    reset_gpus(state, [bus])
    nvml.nvmlInit()
    assert nvml.nvmlDeviceGetMigMode(nvml.nvmlDeviceGetHandleByPciBusId(bus)) == [1, 1]


def test_ampere_clients_block_activation_and_reset(tmp_path: Path) -> None:
    """Ampere with a driver client: activation status IN_USE, and the reset is refused."""
    state = new_host(tmp_path, (A100, 1))
    attach(state, 0, "nv-hostengine", pid=812)
    nvml = opened(state)
    dev = nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml.nvmlDeviceSetMigMode(dev, 1) == pynvml.NVML_ERROR_IN_USE
    assert nvml.nvmlDeviceGetMigMode(dev) == [0, 1]
    nvml.nvmlShutdown()
    with pytest.raises(ResetRefused, match=r"00000000:07:00.0.*nv-hostengine \(pid 812\)"):
        reset_gpus(state, ["00000000:07:00.0"])
    detach(state, 0, "nv-hostengine")
    reset_gpus(state, ["00000000:07:00.0"])
    nvml.nvmlInit()
    assert nvml.nvmlDeviceGetMigMode(nvml.nvmlDeviceGetHandleByIndex(0)) == [1, 1]


@pytest.mark.parametrize("model", [H200, A30])
def test_disabling_mig_with_instances_is_in_use(tmp_path: Path, model: str) -> None:
    """MIG cannot be turned off while GPU instances exist, on any architecture."""
    state = new_host(tmp_path, (model, 1))
    nvml = opened(state)
    dev = mig_on_after_reset(nvml, state)
    create(nvml, dev, model, 0)
    with pytest.raises(pynvml.NVMLError_InUse):
        nvml.nvmlDeviceSetMigMode(dev, 0)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceSetMigMode(dev, 2)


def test_reset_refused_while_nvml_is_open(tmp_path: Path) -> None:
    """A live NVML session (even the caller's own) blocks the reset; a dead one does not."""
    state = new_host(tmp_path, (A100, 1))
    nvml = opened(state)
    with pytest.raises(ResetRefused, match=f"NVML pid {os.getpid()}"):
        reset_gpus(state, ["0000:07:00.0"])
    nvml.nvmlShutdown()
    died = python(
        "import os, sys; from migrestore.simulator import Simulator; "
        "Simulator(sys.argv[1]).nvmlInit(); os._exit(0)",
        str(state),
    )
    assert died.returncode == 0, died.stderr
    assert json.loads(state.read_text())["sessions"]
    reset_gpus(state, ["0000:07:00.0"])


def test_reset_clears_instances_and_refuses_unknown_buses(tmp_path: Path) -> None:
    """A reset destroys every instance; an unknown bus id is refused."""
    state = new_host(tmp_path, (H200, 1), sysroot=True)
    nvml = opened(state)
    dev = mig_on(nvml)
    create(nvml, dev, H200, 19, 0)
    nvml.nvmlShutdown()
    with pytest.raises(ResetRefused, match=r"00000000:AA:00\.0"):
        reset_gpus(state, ["00000000:AA:00.0"])
    reset_gpus(state, ["00000000:07:00.0"])
    nvml.nvmlInit()
    assert nvml.nvmlDeviceGetGpuInstanceRemainingCapacity(dev, 19) == 7
    assert nvml.nvmlDeviceGetMigMode(dev) == [1, 1]
    assert not list((tmp_path / "root/proc/driver/nvidia/capabilities/gpu0/mig").iterdir())


def test_reboot_per_architecture(tmp_path: Path) -> None:
    """Reboot: Hopper loses MIG mode, Ampere keeps it and applies a pending change."""
    state = new_host(tmp_path, (H200, 1), (A100, 2))
    attach(state, 1, "dcgm")
    nvml = opened(state)
    hopper, ampere, pending = (nvml.nvmlDeviceGetHandleByIndex(i) for i in range(3))
    nvml.nvmlDeviceSetMigMode(hopper, 1)
    create(nvml, hopper, H200, 0)
    nvml.nvmlDeviceSetMigMode(pending, 1)
    nvml.nvmlShutdown()
    reboot(state)
    nvml.nvmlInit()
    assert nvml.nvmlDeviceGetMigMode(hopper) == [0, 0]
    assert nvml.nvmlDeviceGetMigMode(ampere) == [0, 0]
    assert nvml.nvmlDeviceGetMigMode(pending) == [1, 1]
    host = json.loads(state.read_text())
    assert all(not g["instances"] and not g["clients"] for g in host["gpus"])
    assert [s["pid"] for s in host["sessions"]] == [os.getpid()]


def test_ampere_mode_survives_reboot(tmp_path: Path) -> None:
    """An Ampere GPU in MIG mode is still in MIG mode after a reboot (InfoROM bit)."""
    state = new_host(tmp_path, (A30, 1))
    nvml = opened(state)
    nvml.nvmlDeviceSetMigMode(nvml.nvmlDeviceGetHandleByIndex(0), 1)
    nvml.nvmlShutdown()
    reset_gpus(state, ["00000000:07:00.0"])
    reboot(state)
    nvml.nvmlInit()
    assert nvml.nvmlDeviceGetMigMode(nvml.nvmlDeviceGetHandleByIndex(0)) == [1, 1]


def test_driver_arrives_late(tmp_path: Path) -> None:
    """nvmlInit fails with DriverNotLoaded until the driver appears; /proc follows."""
    state = new_host(tmp_path, (H200, 1), sysroot=True)
    unload_driver(state, reload_after=0.3)
    assert not (tmp_path / "root/proc/driver/nvidia").exists()
    nvml = Simulator(state)
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded):
        nvml.nvmlInit()
    time.sleep(0.35)
    nvml.nvmlInit()
    assert nvml.nvmlDeviceGetCount() == 1
    assert (tmp_path / "root/proc/driver/nvidia-caps/mig-minors").is_file()
    nvml.nvmlShutdown()
    unload_driver(state)
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded):
        nvml.nvmlInit()
    load_driver(state)
    nvml.nvmlInit()


# ---- GPU instances ----


def test_create_needs_mig(tmp_path: Path) -> None:
    """Creating a GPU instance with MIG disabled is NotSupported."""
    nvml = opened(new_host(tmp_path, (H200, 1)))
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nvml.nvmlDeviceCreateGpuInstance(nvml.nvmlDeviceGetHandleByIndex(0), 19)


@pytest.mark.parametrize(
    ("profile_id", "start", "size"), [(19, 7, 1), (9, 2, 4), (14, 1, 2), (1, 0, 1), (19, 0, 2)]
)
def test_unlisted_placement_or_profile_is_invalid(
    tmp_path: Path, profile_id: int, start: int, size: int
) -> None:
    """A placement not in the possible list, or an unknown profile id, is InvalidArgument."""
    nvml = opened(new_host(tmp_path, (H200, 1)))
    dev = mig_on(nvml)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceCreateGpuInstanceWithPlacement(dev, profile_id, where(nvml, start, size))


def test_overlap_and_limits_are_insufficient_resources(tmp_path: Path) -> None:
    """Overlapping memory slices, a full profile, a second +me: InsufficientResources."""
    nvml = opened(new_host(tmp_path, (H200, 1)))
    dev = mig_on(nvml)
    assert create(nvml, dev, H200, 5, 0) == 1
    for profile_id, start in [(19, 3), (14, 2), (5, 0), (0, 0)]:
        with pytest.raises(pynvml.NVMLError_InsufficientResources):
            create(nvml, dev, H200, profile_id, start)
    assert create(nvml, dev, H200, 20, 4) == 11
    with pytest.raises(pynvml.NVMLError_InsufficientResources):
        create(nvml, dev, H200, 20, 5)
    assert nvml.nvmlDeviceGetGpuInstanceRemainingCapacity(dev, 20) == 0
    assert nvml.nvmlDeviceGetGpuInstanceRemainingCapacity(dev, 19) == 2


def test_one_media_extension_per_gpu(tmp_path: Path) -> None:
    """A30: a 1g+me and a 2g+me cannot coexist (one media extension per GPU)."""
    state = new_host(tmp_path, (A30, 1))
    nvml = opened(state)
    dev = mig_on_after_reset(nvml, state)
    create(nvml, dev, A30, 21, 0)
    with pytest.raises(pynvml.NVMLError_InsufficientResources):
        create(nvml, dev, A30, 6, 2)


H200_IDS = [(19, 0, 7), (19, 1, 8), (19, 2, 9), (19, 3, 10), (19, 6, 13), (19, 5, 12)]
H200_IDS += [(14, 2, 4), (14, 4, 5), (9, 4, 2), (5, 0, 1), (0, 0, 0), (15, 6, 6)]


@pytest.mark.parametrize(("profile_id", "start", "gi_id"), H200_IDS)
def test_gi_id_follows_placement_on_8_slice_parts(
    tmp_path: Path, profile_id: int, start: int, gi_id: int
) -> None:
    """full=0, half=1+start/4, quarter=3+start/2, eighth=7+start (documented examples)."""
    nvml = opened(new_host(tmp_path, (H200, 1)))
    assert create(nvml, mig_on(nvml), H200, profile_id, start) == gi_id


def test_gi_ids_on_4_and_12_unit_parts(tmp_path: Path) -> None:
    """RTX PRO 6000: four 1g -> 3..6; A30: 1g@0..3 -> 3..6, 2g@0 -> 1, 4g -> 0."""
    nvml = opened(new_host(tmp_path, (RTX, 1)))
    dev = mig_on(nvml)
    assert [create(nvml, dev, RTX, 14, s) for s in (0, 3, 6, 9)] == [3, 4, 5, 6]
    state = new_host(tmp_path, (A30, 3))
    nvml = opened(state)
    devs = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(3)]
    for dev in devs:
        nvml.nvmlDeviceSetMigMode(dev, 1)
    nvml.nvmlShutdown()
    reset_gpus(state, ["00000000:07:00.0", "00000000:0F:00.0", "00000000:47:00.0"])
    nvml.nvmlInit()
    assert [create(nvml, devs[0], A30, 14, s) for s in range(4)] == [3, 4, 5, 6]
    assert create(nvml, devs[1], A30, 5, 0) == 1
    assert create(nvml, devs[2], A30, 0, 0) == 0


def test_auto_placement_is_order_sensitive_like_the_driver(tmp_path: Path) -> None:
    """H200 without placements: 19,19,14,9 fails at the 3g; 9,19,14,19 fits; 9,9 -> ids 2, 1."""
    nvml = opened(new_host(tmp_path, (H200, 3)))
    first, second, third = (mig_on(nvml, i) for i in range(3))
    for profile_id in (19, 19, 14):
        create(nvml, first, H200, profile_id)
    with pytest.raises(pynvml.NVMLError_InsufficientResources):
        create(nvml, first, H200, 9)
    assert [create(nvml, second, H200, p) for p in (9, 19, 14, 19)] == [2, 10, 3, 9]
    assert [create(nvml, third, H200, 9) for _ in range(2)] == [2, 1]


def test_destroy_rules(tmp_path: Path) -> None:
    """A GI with compute instances or processes is InUse; a CI with processes too."""
    state = new_host(tmp_path, (H200, 1))
    nvml = opened(state)
    dev = mig_on(nvml)
    gi = nvml.nvmlDeviceCreateGpuInstance(dev, 9)
    ci = nvml.nvmlGpuInstanceCreateComputeInstance(gi, 2)
    gi_id = nvml.nvmlGpuInstanceGetInfo(gi).id
    with pytest.raises(pynvml.NVMLError_InUse):
        nvml.nvmlGpuInstanceDestroy(gi)
    attach(state, 0, "train.py", gi_id=gi_id, ci_id=0)
    with pytest.raises(pynvml.NVMLError_InUse):
        nvml.nvmlComputeInstanceDestroy(ci)
    detach(state, 0, "train.py")
    nvml.nvmlComputeInstanceDestroy(ci)
    attach(state, 0, "monitor", gi_id=gi_id)
    with pytest.raises(pynvml.NVMLError_InUse):
        nvml.nvmlGpuInstanceDestroy(gi)
    detach(state, 0, "monitor")
    nvml.nvmlGpuInstanceDestroy(gi)
    with pytest.raises(pynvml.NVMLError_NotFound):
        nvml.nvmlDeviceGetGpuInstanceById(dev, gi_id)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlGpuInstanceGetInfo(gi)


def test_attach_names_existing_instances(tmp_path: Path) -> None:
    """Attaching to a missing instance or an unknown GPU is a ConfigError."""
    state = new_host(tmp_path, (H200, 1))
    with pytest.raises(ConfigError, match="no GPU instance 3"):
        attach(state, 0, "x", gi_id=3)
    with pytest.raises(ConfigError, match="no GPU 4"):
        attach(state, 4, "x")
    with pytest.raises(ConfigError, match="no client 'y'"):
        detach(state, 0, "y")


# ---- compute instances ----


def test_compute_instance_ids_and_placements(tmp_path: Path) -> None:
    """CI ids are the lowest free; without a placement the first free slot is taken."""
    nvml = opened(new_host(tmp_path, (H200, 1)))
    gi = nvml.nvmlDeviceCreateGpuInstance(mig_on(nvml), 0)
    cis = [nvml.nvmlGpuInstanceCreateComputeInstance(gi, 0) for _ in range(3)]
    infos = [nvml.nvmlComputeInstanceGetInfo(ci) for ci in cis]
    assert [(i.id, i.placement.start, i.placement.size) for i in infos] == [
        (0, 0, 1),
        (1, 1, 1),
        (2, 2, 1),
    ]
    nvml.nvmlComputeInstanceDestroy(cis[1])
    placement = nvml.c_nvmlComputeInstancePlacement_t()
    placement.start, placement.size = 4, 3
    ci = nvml.nvmlGpuInstanceCreateComputeInstanceWithPlacement(gi, 2, ctypes.byref(placement))
    assert nvml.nvmlComputeInstanceGetInfo(ci).id == 1
    assert nvml.nvmlGpuInstanceGetComputeInstanceRemainingCapacity(gi, 0) == 2  # slots 1, 3
    placement.start, placement.size = 2, 3
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlGpuInstanceCreateComputeInstanceWithPlacement(gi, 2, ctypes.pointer(placement))
    placement.start = 0
    with pytest.raises(pynvml.NVMLError_InsufficientResources):
        nvml.nvmlGpuInstanceCreateComputeInstanceWithPlacement(gi, 2, ctypes.pointer(placement))
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlGpuInstanceCreateComputeInstance(gi, 9)


def test_compute_profile_indices(tmp_path: Path) -> None:
    """On a 3g GI: indices 0-2 answer, 3 is NotSupported, 9 and a bad engine are invalid."""
    nvml = opened(new_host(tmp_path, (H200, 1)))
    gi = nvml.nvmlDeviceCreateGpuInstance(mig_on(nvml), 9)
    names = [nvml.nvmlGpuInstanceGetComputeInstanceProfileInfo(gi, i, 0).name for i in range(3)]
    assert names == ["MIG 1c.3g.71gb", "MIG 2c.3g.71gb", "MIG 3g.71gb"]
    info = nvml.nvmlGpuInstanceGetComputeInstanceProfileInfo(gi, 2, 0)
    assert (info.multiprocessorCount, info.sharedCopyEngineCount, info.sliceCount) == (60, 3, 3)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nvml.nvmlGpuInstanceGetComputeInstanceProfileInfo(gi, 3, 0)
    for index, engine in [(9, 0), (0, 1)]:
        with pytest.raises(pynvml.NVMLError_InvalidArgument):
            nvml.nvmlGpuInstanceGetComputeInstanceProfileInfo(gi, index, engine)


# ---- MIG devices ----


def test_mig_device_handles(tmp_path: Path) -> None:
    """MIG devices come in (GI id, CI id) order, empty slots are NotFound, handles answer."""
    state = new_host(tmp_path, (H200, 1))
    nvml = opened(state)
    dev = mig_on(nvml)
    for profile_id, start in [(14, 4), (19, 0)]:
        gi = nvml.nvmlDeviceGetGpuInstanceById(dev, create(nvml, dev, H200, profile_id, start))
        nvml.nvmlGpuInstanceCreateComputeInstance(gi, 0)
    attach(state, 0, "train.py", gi_id=7, ci_id=0, pid=4242)
    migs = [nvml.nvmlDeviceGetMigDeviceHandleByIndex(dev, i) for i in range(2)]
    assert nvml.nvmlDeviceGetMaxMigDeviceCount(dev) == 7
    with pytest.raises(pynvml.NVMLError_NotFound):
        nvml.nvmlDeviceGetMigDeviceHandleByIndex(dev, 2)
    ids = [
        (nvml.nvmlDeviceGetGpuInstanceId(m), nvml.nvmlDeviceGetComputeInstanceId(m)) for m in migs
    ]
    assert ids == [(5, 0), (7, 0)]
    assert all(nvml.nvmlDeviceIsMigDeviceHandle(m) for m in migs)
    assert not nvml.nvmlDeviceIsMigDeviceHandle(dev)
    parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(migs[1])
    assert nvml.nvmlDeviceGetUUID(parent) == nvml.nvmlDeviceGetUUID(dev)
    assert nvml.nvmlDeviceGetName(migs[0]) == "NVIDIA H200 MIG 1c.2g.35gb"
    assert nvml.nvmlDeviceGetMemoryInfo(migs[1]).total == 16384 * 1024 * 1024
    assert [p.pid for p in nvml.nvmlDeviceGetComputeRunningProcesses(migs[1])] == [4242]
    assert nvml.nvmlDeviceGetComputeRunningProcesses(migs[0]) == []


def test_processes_are_listed_with_their_instance(tmp_path: Path) -> None:
    """GetComputeRunningProcesses on the parent lists instance processes, not driver clients."""
    state = new_host(tmp_path, (H200, 1))
    nvml = opened(state)
    dev = mig_on(nvml)
    gi = nvml.nvmlDeviceCreateGpuInstance(dev, 0)
    nvml.nvmlGpuInstanceCreateComputeInstance(gi, 4)
    attach(state, 0, "dcgm")
    pid = attach(state, 0, "train.py", gi_id=0, ci_id=0)
    (proc,) = nvml.nvmlDeviceGetComputeRunningProcesses(dev)
    assert (proc.pid, proc.gpuInstanceId, proc.computeInstanceId) == (pid, 0, 0)
    assert proc.usedGpuMemory > 0
    assert nvml.nvmlSystemGetProcessName(pid) == "train.py"
    with pytest.raises(pynvml.NVMLError_NotFound):
        nvml.nvmlSystemGetProcessName(1)


def test_mig_uuids_are_stable(tmp_path: Path) -> None:
    """The same GPU, GI id and CI id give the same MIG UUID (version 5), across reboots."""
    state = new_host(tmp_path, (H200, 1))
    nvml = opened(state)

    def layout(start: int) -> str:
        dev = mig_on(nvml)
        gi = nvml.nvmlDeviceGetGpuInstanceById(dev, create(nvml, dev, H200, 19, start))
        nvml.nvmlGpuInstanceCreateComputeInstance(gi, 0)
        uuid: str = nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetMigDeviceHandleByIndex(dev, 0))
        return uuid

    first = layout(2)
    assert first.startswith("MIG-")
    assert first[18] == "5"
    dev = nvml.nvmlDeviceGetHandleByIndex(0)
    gi = nvml.nvmlDeviceGetGpuInstanceById(dev, 9)
    nvml.nvmlComputeInstanceDestroy(nvml.nvmlGpuInstanceGetComputeInstanceById(gi, 0))
    nvml.nvmlGpuInstanceDestroy(gi)
    assert layout(2) == first
    nvml.nvmlShutdown()
    reboot(state)
    nvml.nvmlInit()
    assert layout(2) == first
    nvml.nvmlShutdown()
    reboot(state)
    nvml.nvmlInit()
    assert layout(3) != first


# ---- several processes, faults, latency, counters ----


def test_other_processes_changes_are_seen(tmp_path: Path) -> None:
    """A client attached by another process is seen by a simulator that already read the file."""
    state = new_host(tmp_path, (A100, 1))
    nvml = opened(state)
    dev = nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml.nvmlDeviceGetMigMode(dev) == [0, 0]
    done = python(
        "import sys; from migrestore.simulator import attach; attach(sys.argv[1], 0, 'nvsm')",
        str(state),
    )
    assert done.returncode == 0, done.stderr
    assert nvml.nvmlDeviceSetMigMode(dev, 1) == pynvml.NVML_ERROR_IN_USE


def test_concurrent_processes_never_share_slices(tmp_path: Path) -> None:
    """Four processes creating 1g instances at once get exactly the 7 distinct ids."""
    state = new_host(tmp_path, (H200, 1))
    nvml = opened(state)
    mig_on(nvml)
    code = textwrap.dedent("""
        import sys, pynvml
        from migrestore.simulator import Simulator
        n = Simulator(sys.argv[1]); n.nvmlInit(); dev = n.nvmlDeviceGetHandleByIndex(0)
        try:
            while True:
                print(n.nvmlGpuInstanceGetInfo(n.nvmlDeviceCreateGpuInstance(dev, 19)).id)
        except pynvml.NVMLError_InsufficientResources:
            n.nvmlShutdown()
    """)
    workers = [
        subprocess.Popen([sys.executable, "-c", code, str(state)], cwd=ROOT, stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    ids = [int(line) for w in workers for line in w.communicate(timeout=60)[0].split()]
    assert sorted(ids) == list(range(7, 14))


def test_fault_fires_once_on_the_nth_call(tmp_path: Path) -> None:
    """The Nth call (counted across processes) fails with the injected error, once."""
    state = new_host(tmp_path, (H200, 1))
    inject_fault(state, "nvmlDeviceGetCount", 2, "GpuIsLost")
    done = python(
        "import sys; from migrestore.simulator import Simulator; n = Simulator(sys.argv[1]); "
        "n.nvmlInit(); n.nvmlDeviceGetCount(); n.nvmlShutdown()",
        str(state),
    )
    assert done.returncode == 0, done.stderr
    nvml = opened(state)
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        nvml.nvmlDeviceGetCount()
    assert nvml.nvmlDeviceGetCount() == 1


@pytest.mark.parametrize(("action", "created"), [("kill-after", True), ("kill-before", False)])
def test_fault_kills_the_process(tmp_path: Path, action: str, created: bool) -> None:
    """kill-after dies with the effect persisted; kill-before dies before any effect."""
    state = new_host(tmp_path, (H200, 1))
    nvml = opened(state)
    dev = mig_on(nvml)
    inject_fault(state, "nvmlDeviceCreateGpuInstanceWithPlacement", 1, "Unknown", action=action)
    died = python(
        """
        import ctypes, sys
        from migrestore.simulator import Simulator
        n = Simulator(sys.argv[1]); n.nvmlInit(); dev = n.nvmlDeviceGetHandleByIndex(0)
        p = n.c_nvmlGpuInstancePlacement_t(); p.start, p.size = 0, 8
        n.nvmlDeviceCreateGpuInstanceWithPlacement(dev, 0, ctypes.pointer(p))
        print("survived")
        """,
        str(state),
    )
    assert died.returncode == -9
    assert "survived" not in died.stdout
    assert (nvml.nvmlDeviceGetGpuInstanceRemainingCapacity(dev, 0) == 0) is created


def test_fault_arguments_are_checked(tmp_path: Path) -> None:
    """Unknown functions, errors and actions, and nth < 1, are ConfigErrors."""
    state = new_host(tmp_path, (H200, 1))
    for args in [("nvmlFoo", 1, "InUse"), ("nvmlInit", 0, "InUse"), ("nvmlInit", 1, "Nope")]:
        with pytest.raises(ConfigError):
            inject_fault(state, *args)
    with pytest.raises(ConfigError):
        inject_fault(state, "nvmlInit", 1, 19, action="explode")
    inject_fault(state, "nvmlInit", 1, "NVMLError_Timeout")
    with pytest.raises(pynvml.NVMLError_Timeout):
        Simulator(state).nvmlInit()


def test_latency_model(tmp_path: Path) -> None:
    """Calls sleep per the model, scaled; off again with None."""
    state = new_host(tmp_path, (H200, 1))
    nvml = opened(state)
    set_latency(state, {"nvmlDeviceGetCount": 0.05}, scale=2)
    began = time.monotonic()
    nvml.nvmlDeviceGetCount()
    assert time.monotonic() - began >= 0.1
    set_latency(state, None)
    began = time.monotonic()
    nvml.nvmlDeviceGetCount()
    assert time.monotonic() - began < 0.05
    with pytest.raises(ConfigError):
        set_latency(state, {"nvmlNothing": 1.0})


def test_counters_merge_at_shutdown_and_exit(tmp_path: Path) -> None:
    """Per-function call counts add up across processes, even without nvmlShutdown."""
    state = new_host(tmp_path, (H200, 1))
    nvml = opened(state)
    nvml.nvmlDeviceGetCount()
    nvml.nvmlShutdown()
    done = python(
        "import sys; from migrestore.simulator import Simulator; n = Simulator(sys.argv[1]); "
        "n.nvmlInit(); n.nvmlDeviceGetCount(); n.nvmlDeviceGetCount()",
        str(state),
    )
    assert done.returncode == 0, done.stderr
    assert counters(state) == {"nvmlInit": 2, "nvmlDeviceGetCount": 3, "nvmlShutdown": 1}
    reset_counters(state)
    assert counters(state) == {}


# ---- the fake /proc ----


def test_capability_files_follow_instances(tmp_path: Path) -> None:
    """Per-instance access files appear on create and vanish on destroy."""
    state = new_host(tmp_path, (H200, 2), sysroot=True)
    proc_caps = tmp_path / "root/proc/driver/nvidia/capabilities"
    assert (proc_caps / "mig/config").read_text() == (
        "DeviceFileMinor: 1\nDeviceFileMode: 256\nDeviceFileModify: 1\n"
    )
    assert caps.caps_major(tmp_path / "root") == 241
    nvml = opened(state)
    dev = mig_on(nvml, 1)
    gi = nvml.nvmlDeviceGetGpuInstanceById(dev, create(nvml, dev, H200, 9, 4))
    ci = nvml.nvmlGpuInstanceCreateComputeInstance(gi, 2)
    access = proc_caps / "gpu1/mig/gi2/ci0/access"
    assert access.read_text() == "DeviceFileMinor: 157\nDeviceFileMode: 292\nDeviceFileModify: 1\n"
    assert (proc_caps / "gpu1/mig/gi2/access").read_text().startswith("DeviceFileMinor: 156\n")
    nvml.nvmlComputeInstanceDestroy(ci)
    assert not access.parent.exists()
    nvml.nvmlGpuInstanceDestroy(gi)
    assert not (proc_caps / "gpu1/mig/gi2").exists()


def test_clients_hold_device_files(tmp_path: Path) -> None:
    """Attached clients show up as processes holding /dev/nvidia* under the sysroot."""
    state = new_host(tmp_path, (H200, 2), sysroot=True)
    attach(state, 1, "nv-hostengine", pid=812)
    found = holders.holders(tmp_path / "root")
    assert found == (holders.Holder(812, "nv-hostengine"),)
    assert os.readlink(tmp_path / "root/proc/812/fd/4") == "/dev/nvidia1"
    detach(state, 1, "nv-hostengine")
    assert holders.holders(tmp_path / "root") == ()


def test_models_cover_the_catalogue() -> None:
    """`simulate models` lists every catalogue model with its slices and profiles."""
    listed = {m.name: m for m in models()}
    assert set(listed) == {m.name for m in catalogue()}
    assert listed[H200].slices == 7
    assert "3g.71gb" in listed[H200].profiles
    assert listed[A30].architecture == "ampere"


# ---- the rules, for every model ----

BASE_ID = {1: 0, 2: 1, 4: 3, 8: 7}  # whole, half, quarter, eighth of the placement range


def check_gpu(gpu: simrules.SimGpu) -> None:
    """No two GPU (or compute) instances share a slice; ids follow the placement rule."""
    units = gpu.model.placement_units
    for gi in gpu.instances:
        assert (
            gi.id == BASE_ID[units // gi.placement.size] + gi.placement.start // gi.placement.size
        )
        others = [o for o in gpu.instances if o is not gi]
        assert not any(gi.placement.overlaps(o.placement) for o in others)
        cis = gi.compute
        assert len({c.id for c in cis}) == len(cis)
        assert all(0 <= c.id < 8 for c in cis)
        assert not any(a.placement.overlaps(b.placement) for a in cis for b in cis if a is not b)
    assert len({gi.id for gi in gpu.instances}) == len(gpu.instances) <= 14


def attempt(change: Callable[[], T]) -> T | simrules.Ret:
    """The rule's result, or the NVML return code it failed with."""
    try:
        return change()
    except simrules.NvmlFailure as failure:
        return failure.code


def step_ci(gpu: simrules.SimGpu, data: st.DataObject) -> simrules.SimGpu:
    """Destroy a GPU instance without compute instances, or add a compute instance to one."""
    gi = data.draw(st.sampled_from(gpu.instances))
    if data.draw(st.booleans()):
        return simrules.destroy_gpu_instance(gpu, gi.id) if not gi.compute else gpu
    profile = data.draw(st.sampled_from(gpu.model.table.ci_for(gi.profile_id)))
    capacity = simrules.ci_capacity(gi, profile)
    result = attempt(lambda: simrules.create_compute_instance(gpu, gi.id, profile.id, None))
    if isinstance(result, simrules.Ret):
        assert result == simrules.Ret.INSUFFICIENT_RESOURCES
        assert capacity == 0
        return gpu
    assert capacity > 0
    return result[0]


def step(gpu: simrules.SimGpu, data: st.DataObject) -> simrules.SimGpu:
    """One random GPU-instance create (placed or not), or a step_ci."""
    change_instances: bool = data.draw(st.booleans())
    if gpu.instances and change_instances:
        return step_ci(gpu, data)
    profile = data.draw(st.sampled_from(gpu.model.table.gi))
    placement: Placement | None = None
    if data.draw(st.booleans()):
        placement = data.draw(st.sampled_from(profile.placements))
    capacity = simrules.gi_capacity(gpu, profile)
    result = attempt(lambda: simrules.create_gpu_instance(gpu, profile.id, placement))
    if isinstance(result, simrules.Ret):
        assert result == simrules.Ret.INSUFFICIENT_RESOURCES
        assert placement is not None or capacity == 0
        return gpu
    assert capacity > 0
    return result[0]


@settings(max_examples=100, deadline=None)
@given(model=st.sampled_from([m.name for m in catalogue()]), data=st.data())
def test_random_changes_keep_the_gpu_consistent(model: str, data: st.DataObject) -> None:
    """Any sequence of creates and destroys leaves disjoint instances with placement ids."""
    gpu = simrules.SimGpu(0, model, "GPU-x", "00000000:07:00.0", 0, MigMode(True, True))
    for _ in range(data.draw(st.integers(min_value=1, max_value=30))):
        gpu = step(gpu, data)
        check_gpu(gpu)


def test_a_driver_reload_drops_instances_and_hopper_mig_mode(tmp_path: Path) -> None:
    """Unload and load the driver: every instance is gone on both GPUs; the H200 comes back with
    MIG off (Hopper), the A100 keeps MIG on (Ampere keeps the mode) with nothing on it."""
    state = new_host(tmp_path, (A100, 1), (H200, 1), sysroot=True)
    nvml = opened(state)
    create(nvml, mig_on_after_reset(nvml, state), A100, 19)
    create(nvml, mig_on(nvml, 1), H200, 19)
    nvml.nvmlShutdown()
    unload_driver(state)
    assert not (tmp_path / "root/proc/driver/nvidia").exists()
    load_driver(state)
    assert (tmp_path / "root/proc/driver/nvidia/capabilities/gpu0/mig").is_dir()
    nvml = opened(state)
    ampere, hopper = (nvml.nvmlDeviceGetHandleByIndex(i) for i in (0, 1))
    assert nvml.nvmlDeviceGetMigMode(hopper) == [0, 0]
    assert nvml.nvmlDeviceGetMigMode(ampere) == [1, 1]
    count = ctypes.c_uint(1)
    gis = (nvml.c_nvmlGpuInstance_t * 7)()
    nvml.nvmlDeviceGetGpuInstances(ampere, 19, gis, ctypes.pointer(count))
    assert count.value == 0
    assert list((tmp_path / "root/proc/driver/nvidia/capabilities/gpu0/mig").iterdir()) == []
