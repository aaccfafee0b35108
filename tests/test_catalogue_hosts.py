"""The models added for NVIDIA's published mig-parted configs: simulated hosts that restore.

`simulate init` builds a host of each, and a whole-GPU layout selected by the model's NVML name
plans, applies and verifies on it. The catalogue-wide properties (random layouts converging,
`simulate models` covering the catalogue) pick these models up by themselves.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from migrestore import cli, profiles

from .simhost import Host

ADDED = (
    "NVIDIA A100-PCIE-40GB",
    "NVIDIA A100 80GB PCIe",
    "NVIDIA A800-SXM4-80GB",
    "NVIDIA A800 80GB PCIe",
    "NVIDIA A800 40GB Active",
    "NVIDIA H800 PCIe",
    "NVIDIA H800",
    "NVIDIA H800 NVL",
    "NVIDIA H200 NVL",
    "NVIDIA H100 96GB",
    "NVIDIA PG506-232",
    "NVIDIA B300 SXM6 AC",
    "NVIDIA GB300",
    "NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
    "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",
)


def migrestore(*argv: str) -> tuple[int, str]:
    """`migrestore ARGV...` in this process: exit status and everything printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli.main(list(argv))
    return code, out.getvalue()


def whole_gpu_layout(name: str) -> tuple[str, str]:
    """A layout giving every GPU of this model its largest profile; and that profile's name."""
    model = profiles.find_model(name)
    assert model is not None
    largest = max(model.table.gi, key=lambda p: (p.slices, -p.index))
    layout = (
        f'version = 1\n[[gpu]]\nselect = {{ model = "{name}" }}\n'
        f'[[gpu.instance]]\nprofile = "{largest.short_name}"\nplacement = 0\n'
    )
    return layout, largest.short_name


@pytest.mark.parametrize("name", ADDED)
def test_added_model_builds_a_host_and_restores_a_whole_gpu_layout(
    tmp_path: Path, name: str
) -> None:
    """simulate init builds two GPUs of the model; a whole-GPU layout plans, applies, verifies."""
    host = Host(tmp_path / "host.json", tmp_path / "layout.toml")
    code, out = migrestore("simulate", "init", str(host.state), "--gpu", f"{name}:2")
    assert code == 0, out
    layout, profile = whole_gpu_layout(name)
    host.write_layout(layout)
    plan = host.run("plan")
    assert plan.code == 0, plan.out + plan.err
    assert profile in plan.out
    applied = host.run("apply")
    assert applied.code == 0, applied.out + applied.err
    verified = host.run("verify")
    assert verified.code == 0, verified.out + verified.err
    gpus = json.loads(host.run("status", "--json").out)["gpus"]
    assert [g["name"] for g in gpus] == [name, name]
    assert all([i["profile"] for i in g["instances"]] == [profile] for g in gpus)


def test_added_models_are_listed_by_simulate_models() -> None:
    """`simulate models` names every added model."""
    code, out = migrestore("simulate", "models")
    assert code == 0
    names = [re.match(r"(.+?) +(ampere|hopper|blackwell) ", line) for line in out.splitlines()]
    assert set(ADDED) <= {found[1] for found in names if found}
