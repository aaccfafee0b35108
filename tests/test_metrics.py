"""Prometheus metrics for node_exporter's textfile collector, written after apply and verify."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from migrestore import metrics, runs, simulator
from migrestore.errors import LockError
from tests.simhost import H100, ONE_INSTANCE_ON_H100, ROOT, Host, make_host

A100 = "NVIDIA A100-SXM4-80GB"
LAST_RUN = (
    "migrestore_reset_pending",
    "migrestore_last_run_success",
    "migrestore_last_run_timestamp_seconds",
    "migrestore_last_run_duration_seconds",
    "migrestore_last_run_changes",
)
# Prometheus data model: metric and label names; base units in the name (seconds).
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def samples(directory: Path) -> dict[str, list[Sample]]:
    """The metrics file parsed by prometheus_client's own parser: samples by family name."""
    text = (directory / metrics.FILE_NAME).read_text()
    families = list(text_string_to_metric_families(text))
    assert all(f.type == "gauge" for f in families)
    return {f.name: list(f.samples) for f in families}


def value(directory: Path, name: str) -> float:
    """The value of an unlabelled metric."""
    [sample] = samples(directory)[name]
    return sample.value


def in_layout(directory: Path) -> dict[str, float]:
    """migrestore_gpu_in_layout by GPU index."""
    return {s.labels["index"]: s.value for s in samples(directory)["migrestore_gpu_in_layout"]}


def host_with_metrics(tmp_path: Path, *gpus: tuple[str, int], layout: str) -> tuple[Host, Path]:
    """A simulated host whose layout file names a metrics directory, which exists."""
    directory = tmp_path / "node-exporter"
    directory.mkdir()
    text = layout.replace("version = 1\n", f'version = 1\n[restore]\nmetrics-dir = "{directory}"\n')
    return make_host(tmp_path, *gpus, layout=text), directory


def test_the_file_parses_and_names_follow_the_conventions(tmp_path: Path) -> None:
    """prometheus_client's parser reads every metric back: gauges, valid names, GPU labels."""
    gpus = (metrics.GpuSample("GPU-a", 0, 'NVIDIA "H100"', True),)
    sample = metrics.RunSample(gpus, False, True, 1_800_000_000.5, 2.25, changes=3)
    assert metrics.write(tmp_path, sample)
    found = samples(tmp_path)
    assert list(found) == ["migrestore_gpu_in_layout", *LAST_RUN]
    assert all(METRIC_NAME.fullmatch(n) and n.startswith("migrestore_") for n in found)
    [gpu] = found["migrestore_gpu_in_layout"]
    assert gpu.labels == {"uuid": "GPU-a", "index": "0", "model": 'NVIDIA "H100"'}
    assert all(LABEL_NAME.fullmatch(label) for label in gpu.labels)
    assert [found[n][0].value for n in LAST_RUN] == [0, 1, 1_800_000_000.5, 2.25, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == [metrics.FILE_NAME]


def test_nothing_is_written_without_the_directory(tmp_path: Path) -> None:
    """Metrics are off while the collector directory does not exist: no file, no directory."""
    sample = metrics.RunSample((), False, True, 0.0, 0.0)
    assert not metrics.write(tmp_path / "absent", sample)
    assert not (tmp_path / "absent").exists()


def test_the_flag_beats_the_layout_file_which_beats_the_default() -> None:
    """--metrics-dir, then [restore] metrics-dir, then node_exporter's default (not simulated)."""
    assert metrics.directory("/a", "/b", simulated=False) == Path("/a")
    assert metrics.directory(None, "/b", simulated=True) == Path("/b")
    assert metrics.directory(None, None, simulated=False) == Path(metrics.DEFAULT_DIR)
    assert metrics.directory(None, None, simulated=True) is None


def test_verify_and_apply_flip_the_gpu_metric(tmp_path: Path) -> None:
    """Drift, apply, verify, a reboot that loses the instances: the metric follows each time."""
    host, directory = host_with_metrics(tmp_path, (H100, 2), layout=ONE_INSTANCE_ON_H100)
    assert host.run("verify").code == 3
    assert in_layout(directory) == {"0": 0, "1": 0}
    assert value(directory, "migrestore_last_run_success") == 0
    assert host.run("apply").code == 0
    assert in_layout(directory) == {"0": 1, "1": 1}
    assert value(directory, "migrestore_last_run_changes") == 6  # per GPU: MIG on, GI, CI
    assert value(directory, "migrestore_last_run_success") == 1
    assert host.run("verify").code == 0
    assert in_layout(directory) == {"0": 1, "1": 1}
    assert value(directory, "migrestore_last_run_changes") == 0
    simulator.reboot(host.state)
    assert host.run("verify").code == 3
    assert in_layout(directory) == {"0": 0, "1": 0}


def test_only_gpus_the_layout_governs_have_a_series(tmp_path: Path) -> None:
    """A GPU no entry selects gets no migrestore_gpu_in_layout series (it cannot drift)."""
    layout = ONE_INSTANCE_ON_H100.replace(f'{{ model = "{H100}" }}', "{ index = 1 }")
    host, directory = host_with_metrics(tmp_path, (H100, 2), layout=layout)
    assert host.run("apply").code == 0
    [gpu] = samples(directory)["migrestore_gpu_in_layout"]
    status = host.run("status", "--json").out
    assert gpu.labels["index"] == "1"
    assert f'"{gpu.labels["uuid"]}"' in status
    assert gpu.labels["model"] == H100


def test_a_pending_reset_is_a_metric(tmp_path: Path) -> None:
    """Ampere with a client blocking the reset: reset pending 1, the GPU not in its layout."""
    layout = ONE_INSTANCE_ON_H100.replace(H100, A100)
    host, directory = host_with_metrics(tmp_path, (A100, 1), layout=layout)
    simulator.attach(host.state, 0, "nv-hostengine")
    assert host.run("apply").code == 4
    assert value(directory, "migrestore_reset_pending") == 1
    assert in_layout(directory) == {"0": 0}
    assert value(directory, "migrestore_last_run_success") == 0


def test_a_run_without_a_driver_writes_a_failed_run(tmp_path: Path) -> None:
    """No driver: verify exits 1 and the file says the run failed, with no GPU series."""
    host, directory = host_with_metrics(tmp_path, (H100, 1), layout=ONE_INSTANCE_ON_H100)
    assert host.run("apply").code == 0
    simulator.unload_driver(host.state)
    assert host.run("verify").code == 1
    found = samples(directory)
    assert found["migrestore_gpu_in_layout"] == []
    assert value(directory, "migrestore_last_run_success") == 0


def test_the_flag_overrides_the_layout_file(tmp_path: Path) -> None:
    """--metrics-dir on apply and verify writes there, not to the layout file's directory."""
    host, directory = host_with_metrics(tmp_path, (H100, 1), layout=ONE_INSTANCE_ON_H100)
    other = tmp_path / "other"
    other.mkdir()
    assert host.run("apply", "--metrics-dir", str(other)).code == 0
    assert host.run("verify", "--metrics-dir", str(other)).code == 0
    assert in_layout(other) == {"0": 1}
    assert not (directory / metrics.FILE_NAME).exists()


def test_a_simulated_host_writes_nothing_by_default(tmp_path: Path) -> None:
    """Without a flag or key a simulated run writes no metrics (none into node_exporter's)."""
    host = make_host(tmp_path, (H100, 1), layout=ONE_INSTANCE_ON_H100)
    before = sorted(tmp_path.iterdir())
    assert host.run("verify").code == 3
    assert sorted(tmp_path.iterdir()) == before


def test_a_file_that_cannot_be_written_is_a_warning(tmp_path: Path) -> None:
    """When the file cannot be replaced the run keeps its exit status and says why in one line."""
    host, directory = host_with_metrics(tmp_path, (H100, 1), layout=ONE_INSTANCE_ON_H100)
    (directory / metrics.FILE_NAME).mkdir()
    result = host.run("apply")
    assert result.code == 0
    [line] = [line for line in result.err.splitlines() if "metrics_not_written" in line]
    assert str(directory) in line
    assert sorted(p.name for p in directory.iterdir()) == [metrics.FILE_NAME]


def test_verify_skips_while_an_apply_holds_the_lock(tmp_path: Path) -> None:
    """--skip-during-apply under an apply's lock: exit 0, one info line, no NVML, file untouched."""
    host, directory = host_with_metrics(tmp_path, (H100, 1), layout=ONE_INSTANCE_ON_H100)
    assert host.run("verify").code == 3
    before = (directory / metrics.FILE_NAME).read_bytes()
    calls = host.counters()
    with runs.locked(Path(f"{host.state}.run"), 0.1):
        result = host.run("verify", "--skip-during-apply")
    assert (result.code, result.out) == (0, "")
    [line] = result.err.splitlines()
    assert "verify_skipped" in line
    assert "info" in line
    assert host.counters() == calls
    assert (directory / metrics.FILE_NAME).read_bytes() == before
    assert host.run("verify", "--skip-during-apply").code == 3


def test_shared_readers_keep_an_apply_out_but_not_each_other(tmp_path: Path) -> None:
    """Readers share the lock; an apply cannot take it until the last reader is done."""
    run_dir = tmp_path / "run"
    with runs.shared_unless_applying(run_dir) as first, runs.shared_unless_applying(run_dir) as two:
        assert (first, two) == (True, True)
        with pytest.raises(LockError), runs.locked(run_dir, 0.2):
            pass
    with runs.locked(run_dir, 0.1), runs.shared_unless_applying(run_dir) as free:
        assert not free


def test_drift_lines_carry_the_warning_priority_under_the_journal(tmp_path: Path) -> None:
    """Under the journal every difference verify finds is a `<4>` line; in sync is plain."""
    host = make_host(tmp_path, (H100, 1), layout=ONE_INSTANCE_ON_H100)
    out = tmp_path / "journal"

    def verify() -> list[str]:
        with out.open("w") as stream:
            info = os.fstat(stream.fileno())
            env = {
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}",
            }
            command = [sys.executable, "-m", "migrestore", "--simulate", str(host.state)]
            subprocess.run(
                [*command, "--config", str(host.config), "verify"],
                stdout=stream,
                env=env,
                cwd=ROOT,
                timeout=60,
                check=False,
            )
        return out.read_text().splitlines()[1:]  # after the SIMULATED banner

    drift = verify()
    assert len(drift) == 3
    assert all(line.startswith("<4>") and ": drift: needs to " in line for line in drift)
    assert host.run("apply").code == 0
    assert verify() == ["in sync: 1 GPU(s) match the layout"]
