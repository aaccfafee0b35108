"""`doctor`: can this host do MIG, and what stands in the way? A read-only checklist.

Each check is one line, pass / warn / fail (or skip, with the reason), with a one-line hint.
The exit status is 1 if any check fails, else 0. Files are read below `--sysroot` (tests, fixture
trees); a simulated host without `--sysroot` has no files of its own, so the file checks are
skipped rather than run against the machine doctor happens to run on.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from migrestore import (
    allocations,
    bindings,
    caps,
    config,
    contract,
    holders,
    host,
    owners,
    profiles,
    report,
    runs,
)
from migrestore.consumers import DEFAULT_STOP_UNITS, FABRIC_MANAGER
from migrestore.context import Context
from migrestore.errors import ConfigError, DriverError, ExitCode, GpuError, UnitError, one_line
from migrestore.interfaces import Units
from migrestore.model import (
    Architecture,
    DesiredNode,
    GpuState,
    NodeState,
    StrEnum,
)
from migrestore.owners import MIG_MANAGER, UNIT_DIRS, driver_container_signs, enabled_by
from migrestore.plan import UNREAD_TABLE, plan_node
from migrestore.verbs.common import add_json_flag, emit

UNIT = "migrestore.service"
PERSISTENCED = "nvidia-persistenced.service"
# The daemon nv-fabricmanager as /proc/PID/comm shows it: cut to 15 characters by the kernel.
FABRIC_MANAGER_COMM = "nv-fabricmanage"
CAP_SYS_ADMIN = 21
MIG_ARCHITECTURES = (Architecture.AMPERE, Architecture.HOPPER, Architecture.BLACKWELL)
KILL_SWITCH = "migrestore=off"
DATA = Path(__file__).resolve().parent.parent / "data"  # migrestore/data: the shipped tables


class Status(StrEnum):
    """How one check came out."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    """One line of the checklist."""

    id: str
    status: Status
    message: str
    hint: str = ""


@dataclass(frozen=True)
class Survey:
    """What doctor read once and the checks share."""

    sysroot: Path
    files: bool  # the sysroot belongs to the host whose GPUs were read
    state: NodeState | None
    desired: DesiredNode | None
    active_units: tuple[str, ...] | None  # None: systemd could not be asked
    units_problem: str = ""
    euid: int = 0

    @property
    def gpus(self) -> tuple[GpuState, ...]:
        """The GPUs read (none if NVML failed)."""
        return self.state.gpus if self.state else ()

    @property
    def needs_reset(self) -> bool:
        """Some GPU changes MIG mode only through a reset (Ampere)."""
        return any(g.architecture.mode_change_needs_reset for g in self.gpus)

    @property
    def stop_units(self) -> tuple[str, ...]:
        """The driver-client units apply stops (from the layout file, else the defaults)."""
        return self.desired.restore.stop_units if self.desired else DEFAULT_STOP_UNITS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--json`."""
    add_json_flag(parser)


def run(ctx: Context, args: argparse.Namespace) -> int:
    """Print the checklist; 1 if anything failed."""
    checks = diagnose(ctx, host.units(ctx))
    if args.json:
        print(report.dumps(contract.versioned("doctor", checklist_json(checks, ctx.simulated))))
    else:
        emit(ctx, checklist_text(checks, ctx.simulated))
    return ExitCode.FAILURE if any(c.status is Status.FAIL for c in checks) else ExitCode.OK


def diagnose(ctx: Context, units: Units) -> tuple[Check, ...]:
    """Every check, in the order the checklist shows them."""
    state, driver = _read_gpus(ctx)
    if state is None:
        driver = _containerized_driver(ctx) or driver
    desired, layout_file = _read_layout(ctx)
    survey = _survey(ctx, units, state, desired)
    return (
        driver,
        *_guarded("bindings", lambda: [_bindings_check()]),
        *_guarded("gpus", lambda: _gpu_checks(survey)),
        *_guarded("driver.minimums", lambda: _driver_minimums(survey)),
        *_guarded(
            "privileges", lambda: [privileges(survey.euid, _cap_eff(Path("/proc/self/status")))]
        ),
        *_guarded("reset", lambda: _reset_checks(survey)),
        *_guarded("caps", lambda: _capability_checks(survey)),
        layout_file,
        *_guarded("layout.fit", lambda: _layout_fit(survey, ctx.config)),
        *_guarded("unit", lambda: _unit_checks(survey, ctx.state_dir)),
        *_guarded("owner", lambda: _owner_checks(survey)),
        *_guarded("allocations", lambda: _allocation_checks(survey)),
        *_guarded("tooling", lambda: _tooling_checks(survey)),
    )


def _guarded(where: str, checks: Callable[[], Sequence[Check]]) -> list[Check]:
    """A group of checks; whatever keeps it from inspecting the host is one "cannot check" line
    with the reason: a checklist reports what it cannot see, it never crashes."""
    try:
        return list(checks())
    except Exception as exc:  # the reason becomes the line
        return [cannot_check(where, exc)]


def cannot_check(where: str, exc: BaseException) -> Check:
    """The line for a check that could not look: the reason, in one line."""
    kind = "" if isinstance(exc, (OSError, UnitError)) else f"{type(exc).__name__}: "
    return Check(where, Status.SKIP, one_line(f"cannot check: {kind}{exc}"))


def _survey(
    ctx: Context, units: Units, state: NodeState | None, desired: DesiredNode | None
) -> Survey:
    files = not ctx.simulated or ctx.sysroot_given
    euid = os.geteuid()
    survey = Survey(ctx.sysroot, files, state, desired, None, euid=euid)
    wanted = tuple(dict.fromkeys((*survey.stop_units, PERSISTENCED, FABRIC_MANAGER, MIG_MANAGER)))
    try:
        active = units.active(wanted)
    except (UnitError, OSError) as exc:
        return Survey(ctx.sysroot, files, state, desired, None, str(exc), euid)
    return Survey(ctx.sysroot, files, state, desired, active, euid=euid)


# ---- GPUs and driver ----


def _read_gpus(ctx: Context) -> tuple[NodeState | None, Check]:
    try:
        with host.gpus(ctx) as gpus:
            state = gpus.read_state()
    except (DriverError, GpuError) as exc:
        hint = exc.hint if exc.hint != "retry" else "load the driver: modprobe nvidia"
        return None, Check("driver", Status.FAIL, f"cannot read the GPUs: {exc}", hint)
    except (ImportError, OSError) as exc:
        return None, cannot_check("driver", exc)
    if not state.gpus:
        return state, Check("driver", Status.FAIL, "NVML works but finds no NVIDIA GPU")
    origin = "SIMULATED " if state.simulated else ""
    text = f"{origin}NVIDIA driver {state.driver_version}, {len(state.gpus)} GPU(s) through NVML"
    return state, Check("driver", Status.PASS, text)


def _containerized_driver(ctx: Context) -> Check | None:
    """NVML failed and the GPU operator's driver container is mounted: say that, not "load the
    driver" (the host has no driver of its own to load)."""
    if ctx.simulated and not ctx.sysroot_given:
        return None
    signs = driver_container_signs(ctx.sysroot)
    if not signs:
        return None
    text = (
        f"the NVIDIA driver runs in a container ({signs[0]}): no NVML on the host, "
        "so migrestore has nothing to restore here (the boot restore exits 5)"
    )
    hint = "let the GPU operator's MIG manager own the layout (nvidia.com/mig.config)"
    return Check("driver", Status.FAIL, text, hint)


def _bindings_check() -> Check:
    """The pynvml the GPUs were read with: which copy, and whether it has the MIG calls."""
    found = bindings.loaded_bindings()
    if found is None:
        return Check("bindings", Status.FAIL, "no NVML bindings", "install nvidia-ml-py")
    if not found.mig_calls:
        text = f"NVML bindings {found} lack the MIG calls ({bindings.MIG_CALL})"
        hint = f"reinstall migrestore's package (it carries {bindings.PACKAGED_BINDINGS})"
        return Check("bindings", Status.FAIL, text, hint)
    return Check("bindings", Status.PASS, f"NVML bindings {found}")


def _gpu_checks(survey: Survey) -> list[Check]:
    checks: list[Check] = []
    for gpu in survey.gpus:
        checks.append(_model_check(gpu))
        if _mig_capable(gpu):
            checks.append(_mode_check(gpu))
    if survey.gpus and not any(_mig_capable(g) for g in survey.gpus):
        hint = "MIG needs an A100, A30, H100, H20, H200, B200 or newer data-center GPU"
        checks.append(Check("mig", Status.FAIL, "no GPU on this host can do MIG", hint))
    return checks


def _mig_capable(gpu: GpuState) -> bool:
    return gpu.mig_capable or gpu.architecture in MIG_ARCHITECTURES


def _known_model(gpu: GpuState) -> profiles.ModelInfo | None:
    return profiles.find_model(gpu.name) or profiles.find_model_by_pci_id(gpu.pci_device_id)


def _model_check(gpu: GpuState) -> Check:
    where = f"gpu{gpu.index}.model"
    arch = gpu.architecture.value.capitalize()
    if not _mig_capable(gpu):
        text = f"{gpu.label}: {arch}, not MIG-capable; migrestore leaves it alone"
        return Check(where, Status.WARN, text)
    if _known_model(gpu) is None:
        text = f"{gpu.label}: {arch}, MIG-capable, not in migrestore's model catalogue"
        hint = "profiles come from the driver; compute-instance profiles are inferred"
        return Check(where, Status.WARN, text, hint)
    return Check(where, Status.PASS, f"{gpu.label}: {arch}, MIG-capable, known model")


def _mode_check(gpu: GpuState) -> Check:
    where = f"gpu{gpu.index}.mig-mode"
    now = "enabled" if gpu.mig.current else "disabled"
    if gpu.mig.is_pending:
        later = "enabled" if gpu.mig.pending else "disabled"
        text = f"MIG mode {now}, {later} after the next GPU reset (pending)"
        return Check(where, Status.WARN, text, "`migrestore apply` resets it, or reboot")
    return Check(where, Status.PASS, f"MIG mode {now}")


@dataclass(frozen=True)
class DriverMinimum:
    """NVIDIA's minimum driver for MIG on one GPU family."""

    gpu: str
    pattern: re.Pattern[str]
    minimum: str


@cache
def _data() -> dict[str, Any]:
    text = (DATA / "driver-minimums.json").read_text()  # a plain read: no importlib.resources
    data: dict[str, Any] = json.loads(text)
    return data


def driver_minimums() -> tuple[DriverMinimum, ...]:
    """The shipped table (migrestore/data/driver-minimums.json)."""
    return tuple(
        DriverMinimum(row["gpu"], re.compile(row["name_pattern"], re.IGNORECASE), row["minimum"])
        for row in _data()["drivers"]
    )


def minimum_for(gpu_name: str) -> DriverMinimum | None:
    """The minimum driver for a GPU as NVML names it, if NVIDIA documents one."""
    return next((m for m in driver_minimums() if m.pattern.search(gpu_name)), None)


def version_key(version: str) -> tuple[int, ...]:
    """`580.159.04` -> (580, 159, 4); a Debian version's epoch and revision are dropped."""
    upstream = version.split(":", 1)[-1].rsplit("-", 1)[0]
    return tuple(int(part) for part in re.findall(r"\d+", upstream.split("~")[0]))


def _driver_minimums(survey: Survey) -> list[Check]:
    if survey.state is None:
        return []
    driver = survey.state.driver_version
    checks = []
    for name in dict.fromkeys(g.name for g in survey.gpus if _mig_capable(g)):
        checks.append(_minimum_check(name, driver))
    return checks


def _minimum_check(gpu_name: str, driver: str) -> Check:
    where = f"driver.{re.sub(r'[^a-z0-9]+', '-', gpu_name.lower()).strip('-')}"
    found = minimum_for(gpu_name)
    if found is None:
        text = f"driver {driver}: NVIDIA documents no MIG driver minimum for {gpu_name}"
        return Check(where, Status.WARN, text, "check the MIG user guide for this GPU")
    if version_key(driver) < version_key(found.minimum):
        text = f"driver {driver} is older than {found.minimum}, the MIG minimum for {found.gpu}"
        return Check(where, Status.FAIL, text, f"install driver {found.minimum} or newer")
    text = f"driver {driver} meets {found.minimum}, the MIG minimum for {found.gpu}"
    return Check(where, Status.PASS, text)


# ---- privileges ----


def _cap_eff(status_file: Path) -> int | None:
    try:
        lines = status_file.read_text().splitlines()
    except OSError:
        return None
    value = next((line.split(":", 1)[1] for line in lines if line.startswith("CapEff:")), None)
    return int(value.strip(), 16) if value else None


def privileges(euid: int, cap_eff: int | None) -> Check:
    """Root can do everything; CAP_SYS_ADMIN alone can change MIG mode but not create instances."""
    if euid == 0:
        return Check("privileges", Status.PASS, "running as root")
    if cap_eff is not None and cap_eff >> CAP_SYS_ADMIN & 1:
        text = f"uid {euid} with CAP_SYS_ADMIN: MIG mode can change; creating instances needs root"
        return Check("privileges", Status.WARN, text, "run migrestore apply as root")
    text = f"uid {euid} without CAP_SYS_ADMIN: cannot change MIG mode or instances"
    return Check("privileges", Status.FAIL, text, "run as root (sudo migrestore ...)")


# ---- what would block a GPU reset (Ampere) ----


def _reset_checks(survey: Survey) -> list[Check]:
    return [
        _client_units(survey),
        _holder_processes(survey),
        _nvidia_drm(survey),
        _persistence(survey),
        _fabric_manager(survey),
    ]


def _blocker(survey: Survey, where: str, found: str, hint: str) -> Check:
    """A reset blocker: a warning where a GPU needs resets (Ampere), harmless elsewhere."""
    if survey.needs_reset:
        return Check(
            where, Status.WARN, f"{found}: blocks the GPU reset an Ampere mode change needs", hint
        )
    return Check(where, Status.PASS, f"{found}: no GPU here needs a reset to change MIG mode")


def _client_units(survey: Survey) -> Check:
    if survey.active_units is None:
        text = f"cannot check which GPU-client units run: {survey.units_problem}"
        return Check(
            "reset.units", Status.WARN, text, "is D-Bus running, python3-pystemd installed?"
        )
    running = [u for u in survey.active_units if u in survey.stop_units]
    if not running:
        return Check("reset.units", Status.PASS, "no configured GPU-client unit is running")
    text = f"GPU-client units running: {', '.join(running)}; apply stops them around a reset"
    return Check("reset.units", Status.PASS, text)


def _holder_processes(survey: Survey) -> Check:
    if not survey.files:
        return _skipped("reset.processes")
    hidden = _processes_hidden(survey)
    if hidden:
        text = f"cannot check which processes hold /dev/nvidia*: {hidden}"
        return Check("reset.processes", Status.SKIP, text, "run migrestore doctor as root")
    found = holders.holders(survey.sysroot)
    if not found:
        return Check("reset.processes", Status.PASS, "no process holds /dev/nvidia*")
    hint = "stop them, or list their units in [restore] stop-units"
    return _blocker(
        survey, "reset.processes", f"/dev/nvidia* held by {holders.describe(found)}", hint
    )


def _processes_hidden(survey: Survey) -> str:
    """Why the open files of other processes cannot be seen ("" if they can)."""
    proc = survey.sysroot / "proc"
    try:
        os.listdir(proc)
    except OSError as exc:
        return f"cannot list {proc}: {exc.strerror or exc}"
    return "" if survey.euid == 0 else f"uid {survey.euid}, not root: other processes are hidden"


def _modules(survey: Survey) -> set[str] | None:
    try:
        text = (survey.sysroot / "proc/modules").read_text()
    except OSError:
        return None
    return {line.split(" ", 1)[0] for line in text.splitlines() if line}


def _nvidia_drm(survey: Survey) -> Check:
    if not survey.files:
        return _skipped("reset.nvidia-drm")
    modules = _modules(survey)
    if modules is None:
        return Check("reset.nvidia-drm", Status.WARN, "cannot read /proc/modules")
    if "nvidia_drm" not in modules:
        return Check("reset.nvidia-drm", Status.PASS, "nvidia_drm is not loaded")
    hint = "rmmod nvidia_drm (and keep it from loading on GPU-compute hosts)"
    return _blocker(survey, "reset.nvidia-drm", "nvidia_drm is loaded", hint)


def _persistence(survey: Survey) -> Check:
    persistent = [g for g in survey.gpus if g.persistence]
    if persistent:
        which = ", ".join(f"GPU {g.index}" for g in persistent)
        return _persistence_handled(survey, f"persistence mode is on: {which}")
    if survey.active_units is None and not survey.files:
        return _skipped("reset.persistence")
    running = bool(survey.active_units and PERSISTENCED in survey.active_units)
    if survey.files:
        proc = survey.sysroot / "proc"
        names = (holders.process_name(proc / str(pid)) for pid in holders.process_ids(proc))
        running = running or "nvidia-persistenced" in names
    if not running:
        text = "persistence mode off and nvidia-persistenced not running"
        return Check("reset.persistence", Status.PASS, text)
    return _persistence_handled(survey, "nvidia-persistenced keeps the GPUs open")


def _persistence_handled(survey: Survey, found: str) -> Check:
    """Persistence mode blocks a reset, and apply lifts it for each GPU it resets."""
    if not survey.needs_reset:
        return _blocker(survey, "reset.persistence", found, "")
    text = f"{found}: apply turns persistence mode off for each GPU it resets, and on again"
    return Check("reset.persistence", Status.PASS, text)


def _fabric_manager(survey: Survey) -> Check:
    if not survey.needs_reset:
        return Check("reset.fabric-manager", Status.PASS, "not needed: no Ampere GPU")
    if not survey.files:
        return _skipped("reset.fabric-manager")
    nvswitch = survey.sysroot / "proc/driver/nvidia-nvswitch/devices"
    if not (nvswitch.is_dir() and any(nvswitch.iterdir())):
        text = "not needed: no NVSwitch (/proc/driver/nvidia-nvswitch/devices)"
        return Check("reset.fabric-manager", Status.PASS, text)
    if survey.active_units is not None and FABRIC_MANAGER in survey.active_units:
        return Check("reset.fabric-manager", Status.PASS, f"{FABRIC_MANAGER} runs")
    proc = survey.sysroot / "proc"
    names = (holders.process_name(proc / str(pid)) for pid in holders.process_ids(proc))
    if FABRIC_MANAGER_COMM in names:
        text = f"nv-fabricmanager runs (not as {FABRIC_MANAGER})"
        return Check("reset.fabric-manager", Status.PASS, text)
    if survey.active_units is None:
        return Check("reset.fabric-manager", Status.WARN, "cannot ask systemd about fabric manager")
    # Without it an HGX/DGX A100 resets a GPU only together with all its NVLink peers, which
    # apply never does: a MIG mode change stays pending (exit 4).
    text = (
        f"{FABRIC_MANAGER} is not running: on NVSwitches an Ampere GPU is reset alone only "
        "through it, so apply leaves a MIG mode change pending"
    )
    return Check(
        "reset.fabric-manager", Status.FAIL, text, f"systemctl enable --now {FABRIC_MANAGER}"
    )


def _skipped(where: str) -> Check:
    text = "SIMULATED host without --sysroot: no files of its own to read"
    return Check(where, Status.SKIP, text, "give --sysroot DIR (see `simulate init --sysroot`)")


# ---- /dev/nvidia-caps ----


def _capability_checks(survey: Survey) -> list[Check]:
    if not survey.files:
        return [_skipped("caps.interface")]
    if caps.uses_dev_nodes(survey.sysroot):
        text = "capabilities are /dev/nvidia-caps device nodes (mig-minors present)"
        return [Check("caps.interface", Status.PASS, text), _capability_nodes(survey)]
    if (survey.sysroot / "proc/driver/nvidia/capabilities").is_dir():
        text = "capabilities are in the legacy /proc mode, not /dev/nvidia-caps"
        hint = "load nvidia with nv_cap_enable_devfs=1 so containers can be given MIG devices"
        return [Check("caps.interface", Status.WARN, text, hint)]
    text = "no NVIDIA capability interface found (/proc/driver/nvidia-caps/mig-minors)"
    return [Check("caps.interface", Status.WARN, text, "is the nvidia driver loaded?")]


def _capability_nodes(survey: Survey) -> Check:
    minors = caps.mig_minors(survey.sysroot)
    names = ("config", "monitor", *(caps.wanted_capabilities(survey.state) if survey.state else ()))
    missing = []
    for name in names:
        cap = caps.read_capability(survey.sysroot, name, minors)
        if cap and not (survey.sysroot / caps.CAPS_DIR / f"nvidia-cap{cap.minor}").exists():
            missing.append(f"nvidia-cap{cap.minor} ({name})")
    instances = len(names) - 2
    if missing:
        text = f"missing /dev/nvidia-caps nodes: {', '.join(missing)}"
        return Check(
            "caps.nodes",
            Status.WARN,
            text,
            "`nvidia-smi -L` makes them (apply makes those of the instances it creates)",
        )
    return Check(
        "caps.nodes", Status.PASS, f"config, monitor and {instances} instance node(s) present"
    )


# ---- the layout file ----


def _read_layout(ctx: Context) -> tuple[DesiredNode | None, Check]:
    path = ctx.config
    if not os.path.lexists(path):
        text = f"no layout file at {path}: the boot unit restores nothing"
        return None, Check("layout", Status.WARN, text, f"migrestore export > {path}")
    try:
        desired = config.load(path, root_only=not (ctx.allow_insecure_config or ctx.simulated))
    except ConfigError as exc:
        return None, Check("layout", Status.FAIL, str(exc), exc.hint)
    return desired, Check(
        "layout", Status.PASS, f"{path}: valid, {len(desired.gpus)} [[gpu]] entries"
    )


def _layout_fit(survey: Survey, path: Path) -> list[Check]:
    if survey.desired is None or survey.state is None:
        return []
    try:
        node = plan_node(survey.desired, survey.state)
    except ConfigError as exc:
        return [Check("layout.fit", Status.FAIL, str(exc), exc.hint)]
    problems = [f"{m.gpu.label}: {m.problem}" for m in node.mismatched]
    problems += [f"{s.label} ({s.selector}) selects no GPU present" for s in node.missing]
    if problems:
        return [Check("layout.fit", Status.FAIL, "; ".join(problems))]
    if node.unplanned:
        labels = ", ".join(f"GPU {g.index}" for g in node.unplanned)
        text = f"{path}: not checked on {labels}: {UNREAD_TABLE}"
        return [Check("layout.fit", Status.WARN, text, "run `migrestore apply`, then doctor")]
    if node.renamed:
        hint = "write the driver's names into the file, or see strict-profile-names"
        return [Check("layout.fit", Status.WARN, "; ".join(node.renamed), hint)]
    steps = sum(len(p.steps) for p in node.gpus)
    sync = "in sync" if node.is_empty else f"{steps} step(s) for `migrestore apply`"
    text = f"{path} fits all {len(node.gpus)} GPU(s) it selects; {sync}"
    return [Check("layout.fit", Status.PASS, text)]


# ---- the boot unit ----


def _unit_checks(survey: Survey, state_dir: Path) -> list[Check]:
    if not survey.files:
        return [_skipped("unit")]
    return [_unit_installed(survey), _kill_switch(survey), _last_run(state_dir)]


def _unit_installed(survey: Survey) -> Check:
    root = survey.sysroot
    found = next((root / d / UNIT for d in UNIT_DIRS if os.path.lexists(root / d / UNIT)), None)
    lost = "MIG mode and instances" if _loses_mode(survey) else "MIG instances"
    if found is None:
        text = f"{UNIT} is not installed: {lost} will be lost at the next reboot"
        return Check("unit", Status.WARN, text, "install the migrestore package")
    if found.is_symlink() and os.readlink(found) == "/dev/null":
        return Check(
            "unit", Status.WARN, f"{UNIT} is masked: {lost} will be lost at the next reboot"
        )
    wants = [w for w in (root / "etc/systemd/system").glob("*.wants") if os.path.lexists(w / UNIT)]
    if not wants:
        text = f"{UNIT} is installed but not enabled: {lost} will be lost at the next reboot"
        return Check("unit", Status.WARN, text, f"systemctl enable {UNIT}")
    target = wants[0].name.removesuffix(".wants")
    return Check("unit", Status.PASS, f"{UNIT} installed ({found.parent}) and enabled ({target})")


def _loses_mode(survey: Survey) -> bool:
    return any(not g.architecture.mode_survives_reboot and _mig_capable(g) for g in survey.gpus)


def _kill_switch(survey: Survey) -> Check:
    try:
        words = (survey.sysroot / "proc/cmdline").read_text().split()
    except OSError:
        words = []
    if KILL_SWITCH in words:
        text = f"the kernel command line has {KILL_SWITCH}: the unit is skipped at boot"
        return Check("unit.kill-switch", Status.WARN, text)
    return Check(
        "unit.kill-switch", Status.PASS, f"{KILL_SWITCH} is not on the kernel command line"
    )


def _last_run(state_dir: Path) -> Check:
    record = runs.last(state_dir)
    if record is None:
        return Check("unit.last-run", Status.PASS, f"no run recorded yet in {state_dir}")
    how = "at boot" if record.boot else "by hand"
    text = f"last apply ({how}, {record.time}): {record.result}"
    if record.result == "ok":
        return Check("unit.last-run", Status.PASS, text)
    errors = [f"GPU {g.index}: {g.error}" for g in record.gpus if g.error]
    detail = f"; {errors[0]}" if errors else ""
    return Check("unit.last-run", Status.WARN, text + detail, "see journalctl -u migrestore")


# ---- other owners of MIG ----


def _owner_checks(survey: Survey) -> list[Check]:
    if not survey.files:
        return [_skipped("owner")]
    kubernetes = [_gpu_operator(survey), _dra_driver(survey), _hami(survey)]
    return [_mig_manager(survey), *(_handed_off(survey, c) for c in kubernetes)]


def _handed_off(survey: Survey, check: Check) -> Check:
    """Another owner is fine where the layout leaves it every GPU (all entries managed = false)."""
    entries = survey.desired.gpus if survey.desired else ()
    if check.status is not Status.FAIL or not entries or any(s.managed for s in entries):
        return check
    text = f"{check.message}; the layout leaves every GPU to it (managed = false)"
    return Check(check.id, Status.PASS, text)


def _pids(found: Sequence[owners.Running]) -> str:
    return ", ".join(f"pid {p.pid}" for p in found)


def _gpu_operator(survey: Survey) -> Check:
    """The GPU operator's MIG manager: the node's nvidia.com/mig.config label (kubectl), or its
    program running here. With the operator's defaults every MIG-capable node gets the label
    (all-disabled), and the manager then undoes the restore after every boot."""
    where = "owner.gpu-operator"
    node = socket.gethostname().lower()
    found = owners.running(survey.sysroot, {owners.OPERATOR_MIG_MANAGER})
    read = owners.node_labels(survey.sysroot, node)
    labels = read.labels or {}
    config_label = labels.get(owners.MIG_CONFIG_LABEL)
    deployed = labels.get(owners.DEPLOY_LABEL) != "false"
    hint = (
        f"kubectl label node {node} {owners.DEPLOY_LABEL}=false --overwrite (or migManager "
        "enabled: false in the ClusterPolicy), or leave the GPUs to it: managed = false"
    )
    if found:
        text = (
            f"the GPU operator's MIG manager runs here ({owners.OPERATOR_MIG_MANAGER}, "
            f"{_pids(found)}): it repartitions the GPUs to the node's {owners.MIG_CONFIG_LABEL}"
        )
        return Check(where, Status.FAIL, text, hint)
    if config_label is not None and deployed:
        text = (
            f"the GPU operator's MIG manager manages node {node} "
            f"({owners.MIG_CONFIG_LABEL}={config_label}): it repartitions the GPUs after every boot"
        )
        return Check(where, Status.FAIL, text, hint)
    if read.labels is None:
        text = f"no {owners.OPERATOR_MIG_MANAGER} process; node labels not read ({read.problem})"
        return Check(where, Status.PASS, text)
    if config_label is not None:
        text = f"node {node} has {owners.MIG_CONFIG_LABEL}={config_label}, but " + (
            f"{owners.DEPLOY_LABEL}=false keeps the operator's MIG manager off it"
        )
        return Check(where, Status.PASS, text)
    return Check(where, Status.PASS, f"node {node} has no {owners.MIG_CONFIG_LABEL} label")


def _dynamic_mig(process: owners.Running) -> bool:
    gates = (process.environ or {}).get("FEATURE_GATES", "")
    return owners.DRA_DYNAMIC_MIG.lower() in (g.strip().lower() for g in gates.split(","))


def _dra_driver(survey: Survey) -> Check:
    """The DRA driver for NVIDIA GPUs: with its DynamicMIG feature gate its kubelet plugin
    creates MIG devices for claims and tears down those it did not create."""
    where = "owner.dra"
    found = owners.running(survey.sysroot, {owners.DRA_PLUGIN})
    if not found:
        there = (survey.sysroot / owners.DRA_PLUGIN_DIR).is_dir()
        text = (
            f"/{owners.DRA_PLUGIN_DIR} is there, but its kubelet plugin ({owners.DRA_PLUGIN}) "
            "does not run"
            if there
            else "no DRA driver for NVIDIA GPUs (gpu.nvidia.com) on this node"
        )
        return Check(where, Status.PASS, text)
    plugin = f"the DRA driver's kubelet plugin ({owners.DRA_PLUGIN}, {_pids(found)})"
    if any(_dynamic_mig(p) for p in found):
        text = (
            f"{plugin} runs with DynamicMIG: it creates MIG devices for claims and destroys "
            "those it did not create"
        )
        hint = "turn its DynamicMIG feature gate off, or leave the GPUs to it: managed = false"
        return Check(where, Status.FAIL, text, hint)
    if any(p.environ is None for p in found):
        text = f"{plugin} runs; cannot tell whether DynamicMIG is on (its environment is hidden)"
        return Check(where, Status.WARN, text, "run migrestore doctor as root")
    text = f"{plugin} runs without DynamicMIG: it hands out the MIG devices migrestore makes"
    return Check(where, Status.PASS, text)


def _hami(survey: Survey) -> Check:
    """HAMi schedules and slices the GPUs itself (hami-core; MIG instances in its MIG mode)."""
    where = "owner.hami"
    found = owners.running(survey.sysroot, {owners.HAMI_MONITOR})
    if found:
        text = (
            f"HAMi's device plugin runs here ({owners.HAMI_MONITOR}, {_pids(found)}): it "
            "schedules and slices the GPUs itself, creating MIG instances in its MIG mode"
        )
        hint = "leave the GPUs it schedules to it (managed = false), or take HAMi off this node"
        return Check(where, Status.FAIL, text, hint)
    if (survey.sysroot / owners.HAMI_CORE).is_file():
        text = f"HAMi's hami-core is installed (/{owners.HAMI_CORE}), but its plugin does not run"
        return Check(where, Status.PASS, text)
    return Check(where, Status.PASS, "no HAMi device plugin on this node")


def _mig_manager(survey: Survey) -> Check:
    """NVIDIA's nvidia-mig-manager repartitions the GPUs at every boot too: two owners."""
    masked = survey.sysroot / "etc/systemd/system" / MIG_MANAGER
    if masked.is_symlink() and os.readlink(masked) == "/dev/null":
        return Check("owner.mig-manager", Status.PASS, f"{MIG_MANAGER} is masked")
    targets = enabled_by(survey.sysroot, MIG_MANAGER)
    running = bool(survey.active_units and MIG_MANAGER in survey.active_units)
    if not targets and not running:
        return Check("owner.mig-manager", Status.PASS, f"{MIG_MANAGER} is not enabled")
    how = f"enabled ({', '.join(targets)})" if targets else "running"
    text = (
        f"{MIG_MANAGER} is {how}: it repartitions the GPUs at boot too (two owners of MIG; "
        f"the units conflict, so one of them is dropped at boot)"
    )
    hint = f"systemctl disable --now {MIG_MANAGER} (or mask it), or disable {UNIT}"
    return Check("owner.mig-manager", Status.FAIL, text, hint)


# ---- schedulers' allocations (a live apply asks them) ----


def _allocation_checks(survey: Survey) -> list[Check]:
    if not survey.files:
        return [_skipped("allocations")]
    return [_kubelet_allocations(survey)]


def _kubelet_allocations(survey: Survey) -> Check:
    """kubelet's PodResources API can be asked (List is read-only), or why not."""
    where = "allocations.kubelet"
    path = allocations.kubelet_socket(survey.sysroot)
    if path is None:
        return Check(where, Status.PASS, "no kubelet PodResources socket: no pods to ask about")
    try:
        held = allocations.from_kubelet(path)
    except allocations.AllocationsUnknown as exc:
        text = f"{exc}: a live apply refuses every change here without --force"
        return Check(where, Status.WARN, text, exc.hint)
    mig = sorted({a.device for a in held if a.device.startswith("MIG-")})
    text = f"kubelet's PodResources API answers: pods hold {len(mig)} MIG device(s)"
    return Check(where, Status.PASS, text)


# ---- container tooling ----


def installed_packages(status_file: Path) -> dict[str, str]:
    """Installed package -> version, from a dpkg status file."""
    try:
        text = status_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    packages = {}
    for paragraph in text.split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): *(.*)$", paragraph, re.MULTILINE))
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            packages[fields["Package"]] = fields.get("Version", "")
    return packages


def _tooling_checks(survey: Survey) -> list[Check]:
    if not survey.files:
        return [_skipped("tooling")]
    packages = installed_packages(survey.sysroot / "var/lib/dpkg/status")
    checks = [
        _tooling_check(row, packages[row["package"]])
        for row in _data()["container_tooling"]
        if row["package"] in packages
    ]
    others = ", ".join(f"{r['what']} >= {r['minimum']}" for r in _data()["not_discoverable"])
    text = f"versions not discoverable on the host (they run as containers); MIG needs {others}"
    return [*checks, Check("tooling.kubernetes", Status.SKIP, text)]


def _tooling_check(row: dict[str, Any], version: str) -> Check:
    where = f"tooling.{row['package']}"
    minimum = row["minimum"]
    if minimum is None:
        return Check(where, Status.PASS, f"{row['what']} {version} installed")
    if version_key(version) < version_key(minimum):
        text = f"{row['what']} {version} is older than {minimum}, the first with MIG support"
        return Check(where, Status.WARN, text, f"upgrade {row['package']}")
    return Check(where, Status.PASS, f"{row['what']} {version} meets {minimum}")


# ---- output ----


def checklist_text(checks: tuple[Check, ...], simulated: bool) -> str:
    """One line per check (and an indented hint under warnings and failures), then a summary."""
    width = max(len(c.id) for c in checks)
    lines = []
    for check in checks:
        lines.append(f"{check.status.value.upper():4}  {check.id:{width}}  {check.message}")
        if check.hint and check.status in (Status.WARN, Status.FAIL):
            lines.append(f"{'':4}  {'':{width}}  hint: {check.hint}")
    lines.append(f"doctor: {_summary(checks)}{' (SIMULATED host)' if simulated else ''}")
    return "\n".join(lines)


def _summary(checks: tuple[Check, ...]) -> str:
    counts = {s: sum(1 for c in checks if c.status is s) for s in Status}
    return ", ".join(f"{n} {s.value}" for s, n in counts.items())


def checklist_json(checks: tuple[Check, ...], simulated: bool) -> dict[str, Any]:
    """The checklist for machines."""
    return {
        "simulated": simulated,
        "ok": not any(c.status is Status.FAIL for c in checks),
        "summary": {s.value: sum(1 for c in checks if c.status is s) for s in Status},
        "checks": [{**asdict(c), "status": c.status.value} for c in checks],
    }
