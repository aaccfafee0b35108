"""The models added for NVIDIA's published mig-parted configs: simulated hosts that restore.

`simulate init` builds a host of each, and a whole-GPU layout selected by the model's NVML name
plans, applies and verifies on it; so does NVIDIA's all-balanced entry for it, imported. The
catalogue-wide properties (random layouts converging, `simulate models` covering the catalogue)
pick these models up by themselves.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from migrestore import cli, migparted, profiles

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


# NVIDIA's all-balanced for each added model (the default configs' counts), by one of its PCI ids.
BALANCED = {
    "NVIDIA A100-PCIE-40GB": ("0x20F110DE", {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1}),
    "NVIDIA A800 40GB Active": ("0x20F610DE", {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1}),
    "NVIDIA A100 80GB PCIe": ("0x20B510DE", {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}),
    "NVIDIA A800-SXM4-80GB": ("0x20F310DE", {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}),
    "NVIDIA A800 80GB PCIe": ("0x20F510DE", {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}),
    "NVIDIA H800 PCIe": ("0x232210DE", {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}),
    "NVIDIA H800": ("0x232410DE", {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}),
    "NVIDIA H800 NVL": ("0x233A10DE", {"1g.12gb": 2, "2g.24gb": 1, "3g.47gb": 1}),
    "NVIDIA H200 NVL": ("0x233B10DE", {"1g.18gb": 2, "2g.35gb": 1, "3g.71gb": 1}),
    "NVIDIA H100 96GB": ("0x233D10DE", {"1g.12gb": 2, "2g.24gb": 1, "3g.48gb": 1}),
    "NVIDIA PG506-232": ("0x20B610DE", {"1g.12gb": 2, "2g.24gb": 1, "3g.48gb": 1}),
    "NVIDIA B300 SXM6 AC": ("0x318210DE", {"1g.34gb": 2, "2g.67gb": 1, "3g.135gb": 1}),
    "NVIDIA GB300": ("0x31C210DE", {"1g.35gb": 2, "2g.70gb": 1, "3g.139gb": 1}),
    "NVIDIA RTX PRO 6000 Blackwell Workstation Edition": (
        "0x2BB110DE",
        {"1g.24gb": 2, "2g.48gb": 1},
    ),
    "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition": (
        "0x2BB410DE",
        {"1g.24gb": 2, "2g.48gb": 1},
    ),
}


@pytest.mark.parametrize("name", ADDED)
def test_nvidia_balanced_entry_imports_and_restores_on_the_model(tmp_path: Path, name: str) -> None:
    """NVIDIA's all-balanced entry, filtered on the model's id, imports, applies and verifies."""
    pci_id, devices = BALANCED[name]
    entry = {"device-filter": [pci_id], "devices": "all", "mig-enabled": True}
    config = {"version": "v1", "mig-configs": {"all-balanced": [{**entry, "mig-devices": devices}]}}
    layout = migparted.convert(json.dumps(config), "nvidia.yaml", "all-balanced")
    assert f'select = {{ model = "{name}" }}' in layout
    host = Host(tmp_path / "host.json", tmp_path / "layout.toml")
    assert migrestore("simulate", "init", str(host.state), "--gpu", f"{name}:2")[0] == 0
    host.write_layout(layout)
    applied = host.run("apply")
    assert applied.code == 0, applied.out + applied.err
    assert host.run("verify").code == 0
    gpus = json.loads(host.run("status", "--json").out)["gpus"]
    want = sorted(p for p, count in devices.items() for _ in range(count))
    assert all(sorted(i["profile"] for i in g["instances"]) == want for g in gpus)


def test_added_models_are_listed_by_simulate_models() -> None:
    """`simulate models` names every added model."""
    code, out = migrestore("simulate", "models")
    assert code == 0
    names = [re.match(r"(.+?) +(ampere|hopper|blackwell) ", line) for line in out.splitlines()]
    assert set(ADDED) <= {found[1] for found in names if found}
