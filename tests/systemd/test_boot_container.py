"""The shipped unit on a host whose driver runs in the GPU operator's container, booted by a
private systemd manager: `apply --boot` exits 5 at once, the unit counts that as success (active,
not failed), and a gated kubelet still starts (its gate's `migrestore verify` exits 5, which the
gate lets pass)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .bootrig import BootRig
from .test_boot import BOOT_TIMEOUT, CONSUMERS, layout, outcome, running, started
from .usermanager import UserManager, wait_until

pytestmark = pytest.mark.systemd

H100 = "NVIDIA H100 80GB HBM3"


def test_containerized_driver_is_a_successful_no_op_at_boot(
    manager: UserManager, tmp_path: Path
) -> None:
    """/run/nvidia/driver below the sysroot, no NVML: exit 5 well before driver-timeout, the unit
    active with that StatusText, every consumer (a gated kubelet too) running."""
    rig = BootRig(manager, tmp_path)
    rig.migrestore("simulate", "init", str(rig.state), "--gpu", H100)
    rig.simulate("driver", "--unload")
    rig.layout(layout(driver_timeout=30))
    (tmp_path / "root/run/nvidia/driver").mkdir(parents=True)
    rig.environment["MIGRESTORE_SYSROOT"] = str(tmp_path / "root")
    rig.install_migrestore()
    for name in CONSUMERS:
        # No GPU to attach to: the driver is the container's (consumers that attach would fail).
        rig.install_consumer(name, gpus="", gated=name == "kubelet.service")
    rig.enable("migrestore.service", *rig.consumers)
    began = time.monotonic()
    rig.manager.boot()
    rig.manager.wait_settled("migrestore.service", *rig.consumers, timeout=BOOT_TIMEOUT)
    assert time.monotonic() - began < 25  # no 30 s wait for a driver that never comes
    ended = outcome(rig)
    assert (ended["ActiveState"], ended["Result"], ended["ExecMainStatus"]) == (
        "active",
        "success",
        "5",
    )
    assert ended["StatusText"] == (
        "driver runs in a container (/run/nvidia/driver): nothing to restore on the host"
    )
    # The restore ends within a second: the consumers' start jobs may still be queued.
    wait_until(lambda: running(rig) == list(CONSUMERS), BOOT_TIMEOUT)
    wait_until(lambda: len(started(rig)) == len(CONSUMERS), 10)
    assert {e.unit: e.verify for e in started(rig).values()} == dict.fromkeys(CONSUMERS, 5)
