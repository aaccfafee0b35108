"""`check --consumer`: the layouts a MIG consumer refuses, as rules over resolved entries. No I/O.

What each consumer does with a node's MIG devices, read from its source (the man page's CONSUMERS
section says the same for operators):

- NVIDIA's Kubernetes device plugin, `mig-strategy = single` (k8s-device-plugin
  internal/rm/device_map.go, rm.go): every MIG device of the node is advertised as
  `nvidia.com/gpu`, so the plugin insists that all MIG devices of the node have the same
  attributes ("more than one MIG device type present on node"), that a MIG-enabled GPU has at
  least one MIG device, and that MIG-enabled and MIG-disabled GPUs are not mixed on one node
  ("all devices on the node must be configured with the same migEnabled value"). Any of these
  stops the plugin: none of the node's GPUs is advertised (gpu-operator#460,
  k8s-device-plugin#253).
- The same plugin, `mig-strategy = mixed`: each MIG profile is a resource of its own
  (`nvidia.com/mig-3g.40gb`), but its default resources only cover profiles whose compute
  instance fills the GPU instance; a MIG device of a smaller compute instance matches no resource
  and the plugin does not start. A MIG-enabled GPU without MIG devices failed the plugin too until
  k8s-device-plugin#806 (2024) made it a warning under `mixed` (still an error under `single`).
- Slurm's slurmd with `AutoDetect=nvml` (src/plugins/gpu/nvml/gpu_nvml.c): a MIG-enabled GPU
  without MIG devices is fatal ("MIG mode is enabled, but no MIG devices were found"): slurmd
  does not start. Each MIG device (compute instance) is one GRES whose type is named from the GPU
  instance alone (`<gpu>_<slices>g.<GiB>gb`), so compute instances smaller than their GPU instance
  become GRES of the same type as a whole one, with part of its SMs and its memory shared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from migrestore.model import Consumer, OnFailure, TargetLayout


@dataclass(frozen=True)
class Entry:
    """One `[[gpu]]` entry resolved on the model it is checked against."""

    where: str  # `gpu[1]`
    selector: str  # `model=NVIDIA H100 80GB HBM3`
    model: str
    target: TargetLayout
    on_failure: OnFailure = OnFailure.LEAVE

    @property
    def label(self) -> str:
        """How a warning names the entry."""
        return f"{self.where} ({self.selector}) on {self.model}"


@dataclass(frozen=True)
class Problem:
    """One problem: the entry, the rule it breaks, and what the consumer does about it."""

    entry: Entry
    rule: str
    text: str

    def __str__(self) -> str:
        return f"warning: {self.entry.label}: {self.rule}: {self.text}"


def device_types(target: TargetLayout) -> tuple[str, ...]:
    """The kinds of MIG devices (compute instances) a layout makes, in order, each once."""
    names = (c.profile.short_name for i in target.instances for c in i.compute)
    return tuple(dict.fromkeys(names))


def check(consumer: Consumer, entries: Sequence[Entry]) -> list[Problem]:
    """Every problem `consumer` has with these entries, entry by entry in file order."""
    found: list[Problem] = []
    for entry in entries:
        found += _no_devices(consumer, entry)
        if consumer is Consumer.K8S_MIXED:
            found += _partial(entry, _MIXED_PARTIAL)
        elif consumer is Consumer.SLURM:
            found += _partial(entry, _SLURM_PARTIAL)
    if consumer is Consumer.K8S_SINGLE:
        found += _single(entries)
    order = {e.where: n for n, e in enumerate(entries)}
    return sorted(found, key=lambda w: order[w.entry.where])


_NO_DEVICES = {
    Consumer.K8S_SINGLE: "the device plugin refuses a MIG-enabled GPU without MIG devices and "
    "advertises none of the node's GPUs",
    Consumer.K8S_MIXED: "device plugins before k8s-device-plugin#806 (2024) refuse a MIG-enabled "
    "GPU without MIG devices and advertise none of the node's GPUs; later ones skip the GPU",
    Consumer.SLURM: "slurmd (AutoDetect=nvml) stops at a MIG-enabled GPU without MIG devices: "
    "the node does not register",
}
_MIXED_PARTIAL = (
    "the mixed strategy advertises only MIG devices whose compute instance fills its GPU "
    "instance; with {ci} the plugin does not start"
)
_SLURM_PARTIAL = (
    "Slurm names a MIG GRES by its GPU instance alone, so {ci} is a GRES of the same type as a "
    "whole {gi}, with part of its SMs and its memory shared"
)


def _no_devices(consumer: Consumer, entry: Entry) -> list[Problem]:
    target = entry.target
    if not target.mig or device_types(target):
        return []
    what = "MIG on, no instances" if not target.instances else "GPU instances without compute"
    return [Problem(entry, "mig-without-devices", f"{what}: {_NO_DEVICES[consumer]}")]


def _partial(entry: Entry, text: str) -> list[Problem]:
    """Compute instances smaller than their GPU instance."""
    found = []
    for instance in entry.target.instances:
        small = [c for c in instance.compute if c.profile.slices < instance.profile.slices]
        for ci in dict.fromkeys(c.profile.short_name for c in small):
            gi = instance.profile.short_name
            where = f"{ci} in {gi} at {instance.placement.start}"
            found.append(Problem(entry, "partial-compute-instance", text.format(ci=where, gi=gi)))
    return found


def _single(entries: Sequence[Entry]) -> list[Problem]:
    """The single strategy: one MIG device type on the whole node, MIG on every GPU."""
    found: list[Problem] = []
    first: tuple[Entry, str] | None = None
    with_devices = [e for e in entries if device_types(e.target)]
    for entry in with_devices:
        kinds = device_types(entry.target)
        first = first or (entry, kinds[0])
        others = [k for k in kinds if k != first[1]]
        if others:
            than = f"{first[1]} of {first[0].where}" if first[0] is not entry else first[1]
            found.append(
                Problem(
                    entry,
                    "one-device-type",
                    f"MIG devices {', '.join(others)} beside {than}: the single strategy needs one "
                    "MIG device type on the node, else it advertises none of its GPUs; use mixed",
                )
            )
    for entry in entries:
        if with_devices and not entry.target.mig:
            found.append(
                Problem(
                    entry,
                    "mig-and-whole-gpus",
                    f"MIG off beside MIG GPUs ({with_devices[0].where}): the single strategy "
                    "needs MIG on every GPU of the node, else it advertises none of them",
                )
            )
        if entry.target.mig and entry.on_failure is OnFailure.DISABLE_MIG:
            found.append(
                Problem(
                    entry,
                    "on-failure",
                    '"disable-mig" leaves a whole GPU beside MIG GPUs, which the single strategy '
                    "refuses as well: it keeps the node only if no other GPU has MIG on",
                )
            )
    return found
