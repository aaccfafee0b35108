"""Matching `[[gpu]]` entries to GPUs: precedence, ties, unmanaged and missing GPUs."""

from __future__ import annotations

import pytest

from migrestore import config, profiles
from migrestore.errors import ConfigError
from migrestore.model import DesiredNode, GpuSpec, GpuState, MigMode, NodeState, ProfileTable
from migrestore.selection import Selection, match, model_matches, normalise_pci

SOURCE = "/etc/migrestore/migrestore.toml"
H100 = "NVIDIA H100 80GB HBM3"
A30 = "NVIDIA A30"


def gpu(index: int, name: str, pci: str) -> GpuState:
    """A GPU of the catalogue model `name` (or an unknown model with an empty table)."""
    known = profiles.find_model(name)
    return GpuState(
        index=index,
        uuid=f"GPU-{index:08x}-0000-0000-0000-000000000000",
        pci=pci,
        name=name,
        minor=index,
        architecture=known.architecture if known else profiles.catalogue()[0].architecture,
        memory_mb=known.memory_mb if known else 0,
        mig=MigMode(current=False, pending=False),
        profiles=known.table if known else ProfileTable(gi=()),
    )


HOST = NodeState(
    gpus=(
        gpu(0, H100, "00000000:1B:00.0"),
        gpu(1, H100, "00000000:3B:00.0"),
        gpu(2, A30, "00000000:5B:00.0"),
        gpu(3, A30, "00000000:9B:00.0"),
    )
)


def uuid_of(index: int) -> str:
    """The UUID of GPU `index` on HOST."""
    return HOST.gpus[index].uuid


def desired(*selects: str) -> DesiredNode:
    """A layout with one `[[gpu]]` entry per select expression, in order."""
    entries = "".join(f"[[gpu]]\nselect = {select}\n" for select in selects)
    return config.parse(f"version = 2\n{entries}", SOURCE)


def governing(selection: Selection) -> dict[int, str]:
    """GPU index -> key path of the entry that governs it."""
    by_uuid = {g.uuid: g.index for g in HOST.gpus}
    return {by_uuid[uuid]: spec.where for uuid, spec in selection.governed}


def tie_error(*selects: str) -> str:
    """The message `match` raises for a layout that must be rejected on HOST."""
    with pytest.raises(ConfigError) as caught:
        match(desired(*selects), HOST)
    return str(caught.value)


class TestPrecedence:
    """Identity beats model beats "all"."""

    def test_all_governs_every_gpu(self) -> None:
        """A lone "all" entry governs every GPU; none is unmanaged."""
        selection = match(desired('"all"'), HOST)
        assert governing(selection) == {0: "gpu[0]", 1: "gpu[0]", 2: "gpu[0]", 3: "gpu[0]"}
        assert selection.unmanaged == ()
        assert selection.missing == ()

    def test_model_beats_all(self) -> None:
        """A model entry takes its GPUs from "all", whatever the order in the file."""
        selection = match(desired(f'{{ model = "{A30}" }}', '"all"'), HOST)
        assert governing(selection) == {0: "gpu[1]", 1: "gpu[1]", 2: "gpu[0]", 3: "gpu[0]"}

    @pytest.mark.parametrize(
        "identity",
        [
            "{ index = 1 }",
            '{ pci = "3b:00.0" }',
            '{ pci = "0000:3B:00.0" }',
            f'{{ uuid = "{uuid_of(1)}" }}',
            f'{{ uuid = "{uuid_of(1).upper()}" }}',
        ],
    )
    def test_identity_beats_model_and_all(self, identity: str) -> None:
        """uuid, pci and index selectors take their GPU from model and "all" entries."""
        selection = match(desired('"all"', f'{{ model = "{H100}" }}', identity), HOST)
        assert governing(selection) == {0: "gpu[1]", 1: "gpu[2]", 2: "gpu[0]", 3: "gpu[0]"}

    def test_spec_for(self) -> None:
        """spec_for returns the governing entry, None for an unmanaged GPU."""
        selection = match(desired("{ index = 2 }"), HOST)
        spec = selection.spec_for(uuid_of(2))
        assert isinstance(spec, GpuSpec)
        assert spec.where == "gpu[0]"
        assert selection.spec_for(uuid_of(0)) is None

    def test_pci_of_the_state_in_any_form(self) -> None:
        """A PCI selector matches however the GPU's bus id was spelt when read."""
        host = NodeState(gpus=(gpu(0, H100, "0000:3b:00.0"),))
        selection = match(desired('{ pci = "00000000:3B:00.0" }'), host)
        assert selection.spec_for(host.gpus[0].uuid) is not None


class TestTies:
    """Two entries of the same precedence on one GPU are refused, naming both."""

    def test_two_identity_selectors(self) -> None:
        """uuid and index naming one GPU tie."""
        message = tie_error("{ index = 1 }", f'{{ uuid = "{uuid_of(1)}" }}')
        assert message == (
            f"{SOURCE}: gpu[0].select, gpu[1].select: both select GPU 1 "
            f"({H100}, 00000000:3B:00.0) with the same precedence "
            f"(index=1; uuid={uuid_of(1)})"
        )

    def test_model_name_and_alias(self) -> None:
        """A model's NVML name and its catalogue alias select the same GPUs, so they tie."""
        message = tie_error(f'{{ model = "{H100}" }}', '{ model = "H100-SXM5-80GB" }')
        assert message.startswith(f"{SOURCE}: gpu[0].select, gpu[1].select: both select GPU 0 ")

    def test_tie_hint_explains_precedence(self) -> None:
        """The error's hint spells out the precedence rule."""
        with pytest.raises(ConfigError) as caught:
            match(desired("{ index = 0 }", '{ pci = "1b:00.0" }'), HOST)
        assert caught.value.hint == (
            'an identity selector (uuid, pci, index) beats model, which beats "all"'
        )


class TestUnmatched:
    """GPUs no entry selects, and entries that select no GPU."""

    def test_unselected_gpus_are_unmanaged(self) -> None:
        """GPUs outside every selector are listed as unmanaged, in GPU order."""
        selection = match(desired(f'{{ model = "{A30}" }}'), HOST)
        assert selection.unmanaged == (uuid_of(0), uuid_of(1))
        assert governing(selection) == {2: "gpu[0]", 3: "gpu[0]"}

    def test_empty_layout_leaves_everything_unmanaged(self) -> None:
        """A file without entries manages nothing."""
        selection = match(desired(), HOST)
        assert selection == Selection(governed=(), unmanaged=tuple(g.uuid for g in HOST.gpus))

    @pytest.mark.parametrize(
        "absent",
        ["{ index = 9 }", '{ pci = "0000:af:00.0" }', '{ uuid = "GPU-ffffffff" }'],
    )
    def test_absent_identity_is_missing_not_an_error(self, absent: str) -> None:
        """An identity entry naming no present GPU is reported missing; the rest still match."""
        selection = match(desired('"all"', absent), HOST)
        assert [spec.where for spec in selection.missing] == ["gpu[1]"]
        assert len(selection.governed) == 4

    def test_unknown_model_selecting_nothing_is_an_error(self) -> None:
        """A model name the catalogue does not know that selects no GPU here is a config error
        naming the models present (a typo must not silently do nothing)."""
        with pytest.raises(ConfigError) as caught:
            match(desired('{ model = "NVIDIA H2OO" }'), HOST)
        assert str(caught.value) == (
            f'{SOURCE}: gpu[0].select: model "NVIDIA H2OO" selects no GPU on this host '
            f"(GPUs here: {A30}, {H100}) and names no GPU migrestore knows"
        )

    @pytest.mark.parametrize(
        "fleet_entry",
        [
            '{ model = "NVIDIA H200" }',
            '{ device-id = "0x233510DE" }',
            '{ model = "NVIDIA H2OO" }\noptional = true',
            '{ device-id = "0x12340000" }\noptional = true',
        ],
    )
    def test_a_fleet_entry_for_other_hosts_is_absent_not_an_error(self, fleet_entry: str) -> None:
        """A known model or device id this host lacks, or an optional entry, is absent: the
        other entries still govern their GPUs."""
        selection = match(desired('"all"', fleet_entry), HOST)
        assert [spec.where for spec in selection.absent] == ["gpu[1]"]
        assert selection.missing == ()
        assert len(selection.governed) == 4

    def test_unknown_device_id_selecting_nothing_is_an_error(self) -> None:
        """A device id no catalogue model has, selecting nothing, is a config error."""
        with pytest.raises(ConfigError, match="names no GPU migrestore knows"):
            match(desired('{ device-id = "0x12345678" }'), HOST)

    def test_all_on_a_host_without_gpus_is_an_error(self) -> None:
        """ "all" on a host with no GPU at all is a config error."""
        with pytest.raises(ConfigError) as caught:
            match(desired('"all"'), NodeState(gpus=()))
        assert str(caught.value).startswith(
            f'{SOURCE}: gpu[0].select: "all" selects no GPU on this host (no GPUs found)'
        )

    def test_model_losing_every_gpu_is_not_an_error(self) -> None:
        """A model entry whose GPUs are all taken by identity entries still selects them."""
        selection = match(desired(f'{{ model = "{A30}" }}', "{ index = 2 }", "{ index = 3 }"), HOST)
        assert governing(selection) == {2: "gpu[1]", 3: "gpu[2]"}


class TestModelMatching:
    """How a model selector compares with the name NVML reports."""

    @pytest.mark.parametrize(
        ("wanted", "gpu_name", "expected"),
        [
            (H100, H100, True),
            ("nvidia h100 80gb hbm3", H100, True),
            ("H100-SXM5-80GB", H100, True),
            ("NVIDIA H100 80GB HBM3 (SXM5)", H100, True),
            ("NVIDIA H100 PCIe", H100, False),
            ("NVIDIA B300 SXM6 AC", "NVIDIA B300 SXM6 AC", True),
            ("NVIDIA B300", "NVIDIA B300 SXM6 AC", False),
        ],
    )
    def test_model_matches(self, wanted: str, gpu_name: str, expected: bool) -> None:
        """Catalogue names and aliases, or a plain case-insensitive compare for unknown models."""
        assert model_matches(wanted, gpu_name) is expected

    def test_unknown_model_selects_by_name(self) -> None:
        """A model the catalogue does not know still selects GPUs with exactly that name."""
        unknown = "NVIDIA RTX PRO 5000 Blackwell"
        assert profiles.find_model(unknown) is None
        host = NodeState(gpus=(gpu(0, unknown, "00000000:1B:00.0"),))
        selection = match(desired(f'{{ model = "{unknown}" }}'), host)
        assert governing(selection) == {0: "gpu[0]"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0000:3b:00.0", "00000000:3B:00.0"),
        ("00000000:3B:00.0", "00000000:3B:00.0"),
        ("3b:00.0", "00000000:3B:00.0"),
        ("1:a:1f.7", "00000001:0A:1F.7"),
        ("3b:20.0", None),
        ("3b:00.8", None),
        ("3b:00", None),
        ("000000000:3b:00.0", None),
        ("GPU-1234", None),
    ],
)
def test_normalise_pci(text: str, expected: str | None) -> None:
    """PCI bus ids normalise to NVML's form; malformed ones to None."""
    assert normalise_pci(text) == expected
