"""The simulated H200 answers exactly like the real one (readings in fixtures/simulator/)."""

from __future__ import annotations

import ast
import ctypes
import json
import re
import statistics
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pynvml
import pytest

from migrestore.simulator import DEFAULT_LATENCY, Simulator, init_host
from migrestore.simulator import procfs as simproc

READINGS = Path(__file__).parent / "fixtures" / "simulator" / "h200-driver-580"
REAL = json.loads((READINGS / "nvml-readonly.json").read_text())
DEVICE = REAL["devices"][0]
TIMING_LINE = re.compile(r"^(\w+)(?:\((.*?)\))? (\S+) (.*) ([\d.]+)ms$")


@pytest.fixture
def nvml(tmp_path: Path) -> Iterator[Simulator]:
    """A one-GPU simulated H200 with the real GPU's identity, NVML initialised."""
    state = tmp_path / "host.json"
    identity = (DEVICE["uuid"], DEVICE["pci"]["busId"])
    init_host(state, [("NVIDIA H200", 1)], driver=REAL["driver"], identities=[identity])
    simulator = Simulator(state)
    simulator.nvmlInit()
    yield simulator
    simulator.nvmlShutdown()


def outcome(call: Callable[[], Any]) -> Any:
    """The call's value, or its error recorded the way nvml-readonly.json records errors."""
    try:
        return call()
    except pynvml.NVMLError as exc:
        return {"error": type(exc).__name__, "code": exc.value, "str": str(exc)}


def struct_fields(struct: Any) -> dict[str, Any]:
    """A ctypes struct as a dict, strings decoded."""
    values = {name: getattr(struct, name) for name, *_ in struct._fields_}
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in values.items()}


def placements(nvml: Simulator, dev: Any, profile_id: int) -> list[dict[str, int]]:
    """Possible placements, read with the count-then-array calls the adapter makes."""
    count = ctypes.c_uint(0)
    nvml.nvmlDeviceGetGpuInstancePossiblePlacements(dev, profile_id, None, ctypes.pointer(count))
    array = (nvml.c_nvmlGpuInstancePlacement_t * count.value)()
    nvml.nvmlDeviceGetGpuInstancePossiblePlacements(dev, profile_id, array, ctypes.pointer(count))
    return [{"start": p.start, "size": p.size} for p in array[: count.value]]


def gpu_instance_count(nvml: Simulator, dev: Any, info: Any) -> int:
    """How many GPU instances of a profile exist."""
    count = ctypes.c_uint(0)
    array = (nvml.c_nvmlGpuInstance_t * info.instanceCount)()
    nvml.nvmlDeviceGetGpuInstances(dev, info.id, array, ctypes.pointer(count))
    return count.value


def test_identity_matches(nvml: Simulator) -> None:
    """Name, UUID, PCI info, memory, MIG mode and driver version are the real GPU's."""
    dev = nvml.nvmlDeviceGetHandleByIndex(DEVICE["index"])
    assert nvml.nvmlSystemGetDriverVersion() == REAL["driver"]
    assert nvml.nvmlDeviceGetName(dev) == DEVICE["name"]
    assert nvml.nvmlDeviceGetUUID(dev) == DEVICE["uuid"]
    assert struct_fields(nvml.nvmlDeviceGetPciInfo(dev)) == DEVICE["pci"]
    assert struct_fields(nvml.nvmlDeviceGetMemoryInfo(dev)) == DEVICE["memory"]
    assert nvml.nvmlDeviceGetMigMode(dev) == DEVICE["mig_mode"]


@pytest.mark.parametrize("real", DEVICE["profiles"], ids=lambda p: f"index{p['profile_index']}")
def test_profile_matches(nvml: Simulator, real: dict[str, Any]) -> None:
    """Each GI profile index answers like the real one: info, placements, capacity, instances."""
    dev = nvml.nvmlDeviceGetHandleByIndex(0)
    info = outcome(lambda: nvml.nvmlDeviceGetGpuInstanceProfileInfo(dev, real["profile_index"]))
    if "error" in real["info_v3"]:
        assert info == real["info_v3"]
        return
    # `version` is whatever the caller's pynvml puts in the struct (13.615 sets 0x02000098,
    # 13.610, which made the reading, left 0); the driver does not write it.
    assert struct_fields(info) | {"version": 0} == real["info_v3"]
    assert placements(nvml, dev, info.id) == real["placements"]
    assert nvml.nvmlDeviceGetGpuInstanceRemainingCapacity(dev, info.id) == real["remaining"]
    assert gpu_instance_count(nvml, dev, info) == real["gpu_instances"]


ERROR_CALLS: dict[str, Callable[[Simulator, Any], Any]] = {
    "nvmlDeviceGetGpuInstanceById(0)": lambda n, d: n.nvmlDeviceGetGpuInstanceById(d, 0),
    "nvmlDeviceGetGpuInstanceById(1)": lambda n, d: n.nvmlDeviceGetGpuInstanceById(d, 1),
    "nvmlDeviceGetMigDeviceHandleByIndex(0)": lambda n, d: n.nvmlDeviceGetMigDeviceHandleByIndex(
        d, 0
    ),
    "nvmlDeviceGetGpuInstanceId(parent)": lambda n, d: n.nvmlDeviceGetGpuInstanceId(d),
    "nvmlDeviceGetComputeInstanceId(parent)": lambda n, d: n.nvmlDeviceGetComputeInstanceId(d),
    "nvmlDeviceGetDeviceHandleFromMigDeviceHandle(parent)": (
        lambda n, d: n.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(d)
    ),
    "nvmlDeviceGetGpuInstanceProfileInfo(index 99)": (
        lambda n, d: n.nvmlDeviceGetGpuInstanceProfileInfo(d, 99)
    ),
    "nvmlDeviceGetGpuInstanceRemainingCapacity(id 99)": (
        lambda n, d: n.nvmlDeviceGetGpuInstanceRemainingCapacity(d, 99)
    ),
    "nvmlDeviceGetGpuInstanceRemainingCapacity(id 1)": (
        lambda n, d: n.nvmlDeviceGetGpuInstanceRemainingCapacity(d, 1)
    ),
}


def test_every_recorded_error_is_replayed() -> None:
    """The replay covers every error the real GPU recorded (a new reading fails this test)."""
    assert set(ERROR_CALLS) == set(DEVICE["errors"])


@pytest.mark.parametrize("key", sorted(DEVICE["errors"]))
def test_recorded_error_matches(nvml: Simulator, key: str) -> None:
    """The same call fails with the same error class, code and text."""
    dev = nvml.nvmlDeviceGetHandleByIndex(0)
    assert outcome(lambda: ERROR_CALLS[key](nvml, dev)) == DEVICE["errors"][key]


def test_handle_lookups_fail_like_the_real_gpu(nvml: Simulator) -> None:
    """Index 64, an unknown UUID and an unknown PCI bus id fail as recorded."""
    bad_uuid = "GPU-00000000-0000-0000-0000-000000000000"
    assert outcome(lambda: nvml.nvmlDeviceGetHandleByIndex(64)) == REAL["handle_index_64"]
    assert outcome(lambda: nvml.nvmlDeviceGetHandleByUUID(bad_uuid)) == REAL["handle_bad_uuid"]
    assert (
        outcome(lambda: nvml.nvmlDeviceGetHandleByPciBusId("00000000:FF:00.0"))
        == REAL["handle_bad_pci"]
    )


def timing_lines() -> list[tuple[str, list[int], str, str, float]]:
    """(function, int args, status, value text, ms) for every call in nvml-call-timings.txt."""
    rows = []
    for line in (READINGS / "nvml-call-timings.txt").read_text().splitlines():
        match = TIMING_LINE.match(line.strip())
        if match:
            name, args, status, value, ms = match.groups()
            numbers = [int(a) for a in args.split(",")] if args else []
            rows.append((name, numbers, status, value, float(ms)))
    return rows


def replayed(nvml: Simulator, name: str, args: list[int]) -> Any:
    """Call `name` as the timing probe did: the first argument 0 is GPU 0's handle."""
    function = getattr(type(nvml), name)
    if args and name != "nvmlDeviceGetHandleByIndex":
        return outcome(lambda: function(nvml, nvml.nvmlDeviceGetHandleByIndex(0), *args[1:]))
    return outcome(lambda: function(nvml, *args))


def same_as_recorded(result: Any, status: str, value: str) -> bool:
    """Compare a result with a recorded `OK value` or `NVMLError_X text`."""
    if status != "OK":
        return isinstance(result, dict) and result["error"] == status and result["str"] == value
    struct = re.match(r"<pynvml\.(\w+) object", value)
    if struct:
        return type(result).__name__ == struct.group(1)
    if value.startswith("c_uint("):
        return repr(result) == value
    return bool(result == ast.literal_eval(value))


def test_timing_probe_values_match(nvml: Simulator) -> None:
    """Every modelled call in the timing probe returns the recorded value or error."""
    checked = 0
    for name, args, status, value, _ in timing_lines():
        if status == "TypeError" or name not in vars(Simulator):
            continue  # the probe's own mistakes, or calls migrestore does not use
        if value == repr("(removed)"):
            continue  # a value the recording withheld (the board's serial number)
        assert same_as_recorded(replayed(nvml, name, args), status, value), (name, args, value)
        checked += 1
    assert checked >= 60


def test_measured_latencies_come_from_the_probe() -> None:
    """The latency model's measured entries are the probe's medians of the successful calls."""
    times: dict[str, list[float]] = {}
    for name, _, status, _, ms in timing_lines():
        if status == "OK":
            times.setdefault(name, []).append(ms / 1000)
    measured = {name: statistics.median(values) for name, values in times.items()}
    common = set(measured) & set(DEFAULT_LATENCY)
    assert len(common) >= 19
    for name in common:
        assert DEFAULT_LATENCY[name] == pytest.approx(measured[name], abs=1e-9), name
    init_ms = re.search(r"init_ms ([\d.]+)", (READINGS / "nvml-call-timings.txt").read_text())
    assert init_ms is not None
    assert DEFAULT_LATENCY["nvmlInit"] == pytest.approx(float(init_ms.group(1)) / 1000)


def test_max_mig_devices_zero_with_mig_off_seven_with_mig_on(nvml: Simulator) -> None:
    """GetMaxMigDeviceCount is 0 with MIG disabled (as read) and 7 once MIG is on."""
    dev = nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml.nvmlDeviceGetMaxMigDeviceCount(dev) == 0
    nvml.nvmlDeviceSetMigMode(dev, nvml.NVML_DEVICE_MIG_ENABLE)
    assert nvml.nvmlDeviceGetMaxMigDeviceCount(dev) == 7


def test_mig_minors_identical_to_the_real_file(tmp_path: Path) -> None:
    """The fake /proc/driver/nvidia-caps/mig-minors is byte for byte the real one."""
    init_host(tmp_path / "host.json", [("NVIDIA H200", 2)], sysroot=tmp_path / "root")
    written = tmp_path / "root/proc/driver/nvidia-caps/mig-minors"
    real = (READINGS / "proc-driver-nvidia-caps-mig-minors.txt").read_bytes()
    assert written.read_bytes() == real
    assert simproc.mig_minors_text().encode() == real


def test_gpu_information_file_matches(tmp_path: Path) -> None:
    """/proc/driver/nvidia/gpus/<bus>/information has the real file's format and values."""
    identity = (DEVICE["uuid"], DEVICE["pci"]["busId"])
    init_host(
        tmp_path / "host.json",
        [("NVIDIA H200", 1)],
        identities=[identity],
        sysroot=tmp_path / "root",
    )
    written = tmp_path / "root/proc/driver/nvidia/gpus/0000:00:06.0/information"
    real = (READINGS / "proc-driver-nvidia-gpus-information.txt").read_text()
    assert written.read_text() == real
