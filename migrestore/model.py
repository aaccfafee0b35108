"""The vocabulary: what a GPU host looks like and what the operator wants. No I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from migrestore.consumers import DEFAULT_REFRESH_UNITS, DEFAULT_STOP_UNITS


class StrEnum(str, enum.Enum):
    """A string enum whose str() and format() give its value, as `enum.StrEnum` (3.11+) does."""

    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, format_spec: str) -> str:
        return str.__format__(self, format_spec)


class Architecture(StrEnum):
    """GPU architecture families that matter for MIG."""

    AMPERE = "ampere"
    HOPPER = "hopper"
    BLACKWELL = "blackwell"
    OTHER = "other"

    @property
    def mode_change_needs_reset(self) -> bool:
        """Ampere keeps MIG mode in the InfoROM and applies a change only at a GPU reset."""
        return self is Architecture.AMPERE

    @property
    def mode_survives_reboot(self) -> bool:
        """Hopper and later lose MIG mode at every reboot or driver reload."""
        return self is Architecture.AMPERE

    @classmethod
    def from_nvml(cls, code: int) -> Architecture:
        """Map NVML's `nvmlDeviceArchitecture_t` to a family."""
        return {7: cls.AMPERE, 9: cls.HOPPER, 10: cls.BLACKWELL}.get(code, cls.OTHER)


@dataclass(frozen=True, order=True)
class Placement:
    """A start and a size: memory slices for GPU instances, compute slices for compute instances."""

    start: int
    size: int

    @property
    def end(self) -> int:
        """One past the last slice."""
        return self.start + self.size

    def overlaps(self, other: Placement) -> bool:
        """True if the two share at least one slice."""
        return self.start < other.end and other.start < self.end

    def __str__(self) -> str:
        return f"{self.start}:{self.size}"


@dataclass(frozen=True)
class GiProfile:
    """One GPU-instance profile of one GPU, as NVML reports it."""

    index: int
    id: int
    name: str
    slices: int
    instances: int
    memory_mb: int
    sms: int
    placements: tuple[Placement, ...]
    copy_engines: int = 0
    decoders: int = 0
    encoders: int = 0
    jpegs: int = 0
    ofas: int = 0

    @property
    def short_name(self) -> str:
        """`3g.40gb` for `MIG 3g.40gb`."""
        return self.name.removeprefix("MIG ")

    @property
    def is_media_extension(self) -> bool:
        """`+me` profiles: at most one per GPU."""
        return self.short_name.endswith("+me")

    @property
    def takes_all_media(self) -> bool:
        """`+me.all` profiles own every media engine: only `-me` profiles may sit beside them."""
        return self.short_name.endswith("+me.all")

    @property
    def has_no_media(self) -> bool:
        """`-me` profiles have no media engine at all."""
        return self.short_name.endswith("-me")


@dataclass(frozen=True)
class CiProfile:
    """One compute-instance profile inside one GPU-instance profile."""

    index: int
    id: int
    name: str
    slices: int
    instances: int
    sms: int
    placements: tuple[Placement, ...]
    default: bool

    @property
    def short_name(self) -> str:
        """`1c.3g.40gb` for `MIG 1c.3g.40gb`."""
        return self.name.removeprefix("MIG ")


@dataclass(frozen=True)
class ProfileTable:
    """A GPU's GPU-instance profiles and, per GPU-instance profile id, its CI profiles."""

    gi: tuple[GiProfile, ...]
    ci: tuple[tuple[int, tuple[CiProfile, ...]], ...] = ()

    def gi_by_id(self, profile_id: int) -> GiProfile | None:
        """The GPU-instance profile with this NVML profile id."""
        return next((p for p in self.gi if p.id == profile_id), None)

    def ci_for(self, gi_profile_id: int) -> tuple[CiProfile, ...]:
        """Compute-instance profiles of a GPU-instance profile (empty if unknown)."""
        return next((cis for gid, cis in self.ci if gid == gi_profile_id), ())

    def default_ci(self, gi_profile_id: int) -> CiProfile | None:
        """The full-size compute instance `nvidia-smi -C` would create."""
        return next((c for c in self.ci_for(gi_profile_id) if c.default), None)


@dataclass(frozen=True)
class Process:
    """A process using a GPU or one of its MIG devices."""

    pid: int
    name: str

    def __str__(self) -> str:
        return f"{self.name} (pid {self.pid})"


@dataclass(frozen=True)
class ComputeInstance:
    """A compute instance that exists on a GPU instance."""

    id: int
    profile_id: int
    placement: Placement
    uuid: str = ""
    processes: tuple[Process, ...] = ()


@dataclass(frozen=True)
class GpuInstance:
    """A GPU instance that exists on a GPU."""

    id: int
    profile_id: int
    placement: Placement
    compute: tuple[ComputeInstance, ...] = ()

    @property
    def processes(self) -> tuple[Process, ...]:
        """Every process running on any of its compute instances."""
        return tuple(p for ci in self.compute for p in ci.processes)


@dataclass(frozen=True)
class MigMode:
    """MIG mode now and after the next activation (reset on Ampere)."""

    current: bool
    pending: bool

    @property
    def is_pending(self) -> bool:
        """A change waits for a GPU reset."""
        return self.current != self.pending


@dataclass(frozen=True)
class ModeChange:
    """What a MIG mode change left behind: the mode now, and the activation status NVML returned."""

    mode: MigMode
    activation: str = ""


@dataclass(frozen=True)
class GpuState:
    """Everything migrestore knows about one physical GPU."""

    index: int
    uuid: str
    pci: str
    name: str
    minor: int
    architecture: Architecture
    memory_mb: int
    mig: MigMode
    profiles: ProfileTable
    instances: tuple[GpuInstance, ...] = ()
    pci_device_id: int = 0
    pci_subsystem_id: int = 0
    persistence: bool | None = None  # persistence mode; None when not read
    mig_capable: bool = True  # the MIG-mode query answers, or the catalogue knows the model

    @property
    def label(self) -> str:
        """How messages name this GPU."""
        return f"GPU {self.index} ({self.name}, {self.pci})"

    @property
    def profiles_unread(self) -> bool:
        """MIG-capable, but the driver showed no profile table (R535 with MIG disabled)."""
        return self.mig_capable and not self.profiles.gi


@dataclass(frozen=True)
class UnreadableGpu:
    """A GPU NVML counts but cannot read (fallen off the bus, GpuIsLost, Unknown, not back after
    its reset): named as failed, never planned or touched."""

    index: int
    error: str
    nvml_error: str = ""
    uuid: str = ""  # known when it was read earlier in the run
    name: str = ""
    pci: str = ""

    @property
    def label(self) -> str:
        """How messages name this GPU."""
        return f"GPU {self.index} ({self.name}, {self.pci})" if self.name else f"GPU {self.index}"


@dataclass(frozen=True)
class NodeState:
    """All GPUs of a host, as read through NVML (or the simulator)."""

    gpus: tuple[GpuState, ...]
    driver_version: str = ""
    simulated: bool = False
    unreadable: tuple[UnreadableGpu, ...] = ()

    def by_uuid(self, uuid: str) -> GpuState | None:
        """The GPU with this UUID."""
        return next((g for g in self.gpus if g.uuid == uuid), None)


# ---- the layout file, after parsing (names are resolved per GPU by the planner) ----


class SelectorKind(StrEnum):
    """How a `[[gpu]]` entry picks GPUs, in order of precedence (identity beats model beats all)."""

    UUID = "uuid"
    PCI = "pci"
    INDEX = "index"
    DEVICE_ID = "device-id"
    MODEL = "model"
    ALL = "all"

    @property
    def rank(self) -> int:
        """Higher wins: identity selectors 3, PCI device id 2, model 1, all 0."""
        if self in (SelectorKind.UUID, SelectorKind.PCI, SelectorKind.INDEX):
            return 3
        return {SelectorKind.DEVICE_ID: 2, SelectorKind.MODEL: 1}.get(self, 0)

    @property
    def is_identity(self) -> bool:
        """Names one particular GPU."""
        return self.rank == 3


@dataclass(frozen=True)
class Selector:
    """`select = "all"` or `select = { uuid = ... }` and friends."""

    kind: SelectorKind
    value: str | int = ""

    def __str__(self) -> str:
        if self.kind is SelectorKind.ALL:
            return "all"
        return f"{self.kind.value}={self.value}"


@dataclass(frozen=True)
class ComputeSpec:
    """One wanted compute instance: a profile as written, and an optional start slice."""

    profile: str | int
    placement: int | None = None
    where: str = ""


@dataclass(frozen=True)
class ProfileShape:
    """A GPU-instance profile's geometry as `export` writes it beside the name (`geometry =`):
    compute slices, placement size in memory slices, memory in MiB. It finds the profile again
    when a driver names it otherwise."""

    slices: int
    size: int
    memory_mib: int


@dataclass(frozen=True)
class InstanceSpec:
    """One `[[gpu.instance]]` entry. `compute=None` means one full-size compute instance."""

    profile: str | int
    placement: int | None = None
    count: int = 1
    compute: tuple[ComputeSpec, ...] | None = None
    where: str = ""
    shape: ProfileShape | None = None


class OnFailure(StrEnum):
    """What `apply` does with a GPU whose restore failed (`on-failure`)."""

    LEAVE = "leave"  # as the failure left it
    DISABLE_MIG = "disable-mig"  # its instances destroyed and MIG mode off: a whole GPU


class Consumer(StrEnum):
    """A consumer of MIG devices whose rules `check --consumer` knows (consumer_rules.py)."""

    K8S_SINGLE = "k8s-single"  # NVIDIA's Kubernetes device plugin, mig-strategy single
    K8S_MIXED = "k8s-mixed"  # the same, mig-strategy mixed
    SLURM = "slurm"  # slurmd with AutoDetect=nvml


@dataclass(frozen=True)
class GpuSpec:
    """One `[[gpu]]` entry."""

    selector: Selector
    mig: bool = True
    instances: tuple[InstanceSpec, ...] = ()
    where: str = ""
    optional: bool = False  # selecting no GPU here is fine (a fleet file's entry for other hosts)
    managed: bool = True  # false: the GPUs it selects belong to another owner; never touched
    on_failure: OnFailure | None = None  # None: the [restore] default
    # The drop-in file (conf.d) the entry came from; "" for the main layout file. Error messages
    # name it instead of the main file.
    source: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        """How messages name the entry: `gpu[1]`, or `/etc/migrestore/conf.d/x.toml gpu[0]`."""
        return f"{self.source} {self.where}" if self.source else self.where


@dataclass(frozen=True)
class RestoreOptions:
    """The `[restore]` table: how apply treats the rest of the host."""

    stop_units: tuple[str, ...] = DEFAULT_STOP_UNITS
    refresh_units: tuple[str, ...] = DEFAULT_REFRESH_UNITS
    driver_timeout: float = 120.0
    strict_profile_names: bool = False  # no match by geometry for names the driver renamed
    metrics_dir: str | None = None  # node_exporter's textfile collector directory, if not default
    on_failure: OnFailure = OnFailure.LEAVE  # the default of the [[gpu]] entries
    consumer: Consumer | None = None  # the default of `check --consumer`
    pre_apply: tuple[str, ...] = ()  # a live apply's site check: a non-zero exit refuses


@dataclass(frozen=True)
class DesiredNode:
    """The whole layout file."""

    gpus: tuple[GpuSpec, ...]
    restore: RestoreOptions = field(default_factory=RestoreOptions)
    source: str = "<memory>"
    # The SHA-256 of the bytes `config.load` read, for the run record (not part of the layout).
    sha256: str = field(default="", compare=False)

    def on_failure(self, spec: GpuSpec) -> OnFailure:
        """The failure policy of an entry's GPUs: its own `on-failure`, else [restore]'s."""
        return spec.on_failure or self.restore.on_failure


# ---- a layout resolved against one GPU ----


@dataclass(frozen=True)
class TargetCompute:
    """A compute instance to exist: profile and placement inside its GPU instance."""

    profile: CiProfile
    placement: Placement


@dataclass(frozen=True)
class TargetInstance:
    """A GPU instance to exist, with its exact placement and compute instances."""

    profile: GiProfile
    placement: Placement
    compute: tuple[TargetCompute, ...]


@dataclass(frozen=True)
class TargetLayout:
    """What one GPU must look like."""

    mig: bool
    instances: tuple[TargetInstance, ...] = ()
    renamed: tuple[str, ...] = ()  # warnings: names the driver spells otherwise, matched by shape
