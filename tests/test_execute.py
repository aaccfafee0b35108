"""The executor's handling of driver-client units, with a fake of our own Units interface."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrestore import config, execute, simulator
from migrestore.errors import UnitError
from migrestore.nvml import NvmlGpus
from migrestore.plan import plan_node
from migrestore.systemd import NullNotifier
from tests.fakes import FakeUnits

LAYOUT = 'version = 1\n[[gpu]]\nselect = "all"\n[[gpu.instance]]\nprofile = "7g.80gb"\n'


def run(tmp_path: Path, units: FakeUnits) -> execute.Execution:
    """Apply LAYOUT to a fresh 2 x A100 host (mode change + reset) through the executor."""
    state = tmp_path / "host.json"
    simulator.init_host(state, [("NVIDIA A100-SXM4-80GB", 2)])
    gpus = NvmlGpus(simulator.Simulator(state), lambda pci: simulator.reset_gpus(state, list(pci)))
    with gpus:
        node = plan_node(config.parse(LAYOUT, "t.toml"), gpus.read_state())
        stop = ("nvsm.service", "dcgm.service", "kubelet.service")
        return execute.execute(
            node.gpus, gpus, units, NullNotifier(), execute.Options(stop_units=stop)
        )


def test_only_active_units_are_bounced_in_reverse_order(tmp_path: Path) -> None:
    """Active clients are stopped one by one and started again in reverse; inactive stay so."""
    units = FakeUnits(running=("nvsm.service", "dcgm.service"))
    result = run(tmp_path, units)
    assert all(o.ok for o in result.outcomes)
    assert units.calls == [
        ("stop", ("nvsm.service",)),
        ("stop", ("dcgm.service",)),
        ("start", ("dcgm.service", "nvsm.service")),
    ]
    assert "kubelet.service" not in units.running


def test_a_unit_that_will_not_start_again_keeps_the_gpu_results(tmp_path: Path) -> None:
    """The GPUs' outcomes survive a refused start; the problem is reported, not raised."""
    result = run(tmp_path, FakeUnits(running=("nvsm.service",), refuse_start=("nvsm.service",)))
    assert all(o.ok for o in result.outcomes)
    assert "could not start GPU clients again" in result.unit_error


def test_a_unit_that_will_not_stop_aborts_before_any_gpu_is_touched(tmp_path: Path) -> None:
    """A stop that fails raises, after starting again what was already stopped."""

    units = FakeUnits(running=("nvsm.service", "dcgm.service"), refuse_stop=("dcgm.service",))
    with pytest.raises(UnitError):
        run(tmp_path, units)
    assert units.calls[-1] == ("start", ("nvsm.service",))
    assert simulator.counters(tmp_path / "host.json").get("nvmlDeviceSetMigMode", 0) == 0


def test_refused_reset_names_client_units_still_running(tmp_path: Path) -> None:
    """When a reset is refused, running GPU-client units outside stop-units are named."""
    state = tmp_path / "host.json"
    simulator.init_host(state, [("NVIDIA A100-SXM4-80GB", 1)])
    simulator.attach(state, 0, "nvidia-persistenced")
    gpus = NvmlGpus(simulator.Simulator(state), lambda pci: simulator.reset_gpus(state, list(pci)))
    units = FakeUnits(running=("nvidia-persistenced.service",))
    with gpus:
        node = plan_node(config.parse(LAYOUT, "t.toml"), gpus.read_state())
        result = execute.execute(node.gpus, gpus, units, NullNotifier(), execute.Options())
    (outcome,) = result.outcomes
    assert outcome.reset_pending
    assert "nvidia-persistenced" in outcome.error
    assert "GPU-client units still running: nvidia-persistenced.service" in outcome.error


def test_a_unit_that_will_not_start_again_is_reported_as_failed(tmp_path: Path) -> None:
    """The apply text says FAILED and names the unit, never "stopped and restarted"."""
    from migrestore import report
    from migrestore.model import NodeState
    from migrestore.plan import NodePlan

    result = run(tmp_path, FakeUnits(running=("nvsm.service",), refuse_start=("nvsm.service",)))
    text = report.apply_text(result, NodePlan(gpus=()), NodeState(gpus=()))
    assert "stopped and restarted" not in text
    assert "stopped: nvsm.service; FAILED: could not start GPU clients again" in text
