"""The Python floor of a read-only verb: a minimal pynvml script making migrestore's reads.

    python bench/pynvml_floor.py --simulate STATE VERB     # the simulator's pynvml stand-in
    python bench/pynvml_floor.py VERB                      # the real pynvml (a real host)

It makes exactly the NVML calls `migrestore VERB` makes on a host whose GPU models migrestore
knows, in the same amounts, with no layout file, no plan, no report and no logging: what any
Python tool reading the same things would pay (interpreter, pynvml, the calls). The benchmark runs
it as its own process beside migrestore, on the same simulated host, and prints the ratio;
tests/test_bench_smoke.py checks that the call counts are equal.

VERB is verify or export (the layout: GPUs, MIG mode, profile tables, instances), plan (also the
processes on each GPU), or status, doctor or a no-op apply (also minor numbers, memory, MIG device
UUIDs and, on Ampere, persistence mode). Compute-instance profiles are not NVML's to give before a
GPU instance exists; like migrestore, the script takes them from the documented geometry (which
migrestore's catalogue follows) instead of asking the driver.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

LAYOUT, PROCESSES, FULL = 0, 1, 2
DETAIL = {"verify": LAYOUT, "export": LAYOUT, "plan": PROCESSES}  # anything else: FULL
INVALID_ARGUMENT, NOT_SUPPORTED, NOT_FOUND = 2, 3, 6
MAX_PROFILE_INDEX = 32
MAX_PLACEMENTS = 32
# Compute-instance profile ids (NVML_COMPUTE_INSTANCE_PROFILE_*) by compute-slice count.
CI_PROFILE_BY_SLICES = {1: 0, 2: 1, 3: 2, 4: 3, 7: 4}
AMPERE_NAMES = ("A100", "A30")


def ci_profiles(gi_slices: int) -> list[int]:
    """The compute-instance profile ids of a GPU instance of `gi_slices` compute slices."""
    sizes = [k for k in CI_PROFILE_BY_SLICES if k <= gi_slices and not (gi_slices == 4 and k == 3)]
    return [CI_PROFILE_BY_SLICES[k] for k in sizes]


def gi_profiles(nvml: Any, dev: Any) -> list[tuple[int, int, int]]:
    """(id, instance count, compute slices) of each GPU-instance profile; placements read too."""
    found = []
    for index in range(MAX_PROFILE_INDEX):
        try:
            info = nvml.nvmlDeviceGetGpuInstanceProfileInfo(dev, index)
        except nvml.NVMLError as exc:
            if exc.value == INVALID_ARGUMENT:
                break
            if exc.value == NOT_SUPPORTED:
                continue
            raise
        count = ctypes.c_uint(MAX_PLACEMENTS)
        placements = (nvml.c_nvmlGpuInstancePlacement_t * MAX_PLACEMENTS)()
        nvml.nvmlDeviceGetGpuInstancePossiblePlacements(
            dev, info.id, placements, ctypes.pointer(count)
        )
        found.append((info.id, info.instanceCount, info.sliceCount))
    return found


def listed(nvml: Any, call: Any, parent: Any, profile: int, size: int, kind: Any) -> list[Any]:
    """The GPU or compute instances of one profile (NVML lists them by profile)."""
    count = ctypes.c_uint(0)
    array = (kind * max(size, 1))()
    try:
        call(parent, profile, array, ctypes.pointer(count))
    except nvml.NVMLError as exc:
        if exc.value in (NOT_SUPPORTED, INVALID_ARGUMENT):
            return []
        raise
    return list(array[: count.value])


def instances(nvml: Any, dev: Any, table: list[tuple[int, int, int]]) -> int:
    """Read every GPU and compute instance of a GPU; the number of compute instances."""
    slices = {profile: gi_slices for profile, _, gi_slices in table}
    computes = 0
    for profile, size, _ in table:
        for gi in listed(
            nvml, nvml.nvmlDeviceGetGpuInstances, dev, profile, size, nvml.c_nvmlGpuInstance_t
        ):
            info = nvml.nvmlGpuInstanceGetInfo(gi)
            for ci_profile in ci_profiles(slices[info.profileId]):
                for ci in listed(
                    nvml,
                    nvml.nvmlGpuInstanceGetComputeInstances,
                    gi,
                    ci_profile,
                    8,
                    nvml.c_nvmlComputeInstance_t,
                ):
                    nvml.nvmlComputeInstanceGetInfo(ci)
                    computes += 1
    return computes


def mig_uuids(nvml: Any, dev: Any, expected: int) -> None:
    """The UUID of each MIG device (one per compute instance), scanning until all are seen."""
    seen = 0
    for slot in range(nvml.nvmlDeviceGetMaxMigDeviceCount(dev) if expected else 0):
        if seen >= expected:
            break
        try:
            mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(dev, slot)
        except nvml.NVMLError as exc:
            if exc.value == NOT_FOUND:
                continue
            raise
        nvml.nvmlDeviceGetGpuInstanceId(mig)
        nvml.nvmlDeviceGetComputeInstanceId(mig)
        nvml.nvmlDeviceGetUUID(mig)
        seen += 1


def read(nvml: Any, detail: int) -> str:
    """Every GPU, as much as the verb reads; a one-line summary."""
    nvml.nvmlInit()
    count = nvml.nvmlDeviceGetCount()
    driver = nvml.nvmlSystemGetDriverVersion()
    tables: dict[str, list[tuple[int, int, int]]] = {}
    computes = 0
    for index in range(count):
        dev = nvml.nvmlDeviceGetHandleByIndex(index)
        nvml.nvmlDeviceGetUUID(dev)
        name = nvml.nvmlDeviceGetName(dev)
        nvml.nvmlDeviceGetPciInfo(dev)
        if detail == FULL:
            nvml.nvmlDeviceGetMinorNumber(dev)
            nvml.nvmlDeviceGetMemoryInfo(dev)
            nvml.nvmlDeviceGetSerial(dev)
            if any(a in str(name) for a in AMPERE_NAMES):
                nvml.nvmlDeviceGetPersistenceMode(dev)
        try:
            current = nvml.nvmlDeviceGetMigMode(dev)[0]
        except nvml.NVMLError as exc:
            if exc.value != NOT_SUPPORTED:
                raise
            continue
        if name not in tables:
            tables[name] = gi_profiles(nvml, dev)
        if not current:
            continue
        if detail != LAYOUT:
            for process in nvml.nvmlDeviceGetComputeRunningProcesses(dev):
                nvml.nvmlSystemGetProcessName(process.pid)
        found = instances(nvml, dev, tables[name])
        if detail == FULL:
            mig_uuids(nvml, dev, found)
        computes += found
    nvml.nvmlShutdown()
    return f"{count} GPU(s), driver {driver}, {computes} compute instance(s)"


def main(argv: list[str]) -> int:
    """`[--simulate STATE] VERB`: make the verb's reads, print a summary."""
    if len(argv) == 3 and argv[0] == "--simulate":
        from migrestore.simulator import Simulator

        nvml: Any = Simulator(argv[1])
    elif len(argv) == 1:
        import pynvml

        nvml = pynvml
    else:
        print("usage: pynvml_floor.py [--simulate STATE] VERB", file=sys.stderr)
        return 2
    print(read(nvml, DETAIL.get(argv[-1], FULL)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
