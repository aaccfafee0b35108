"""The journal's MESSAGE_ID for every kind of event migrestore logs, as systemd's catalog gives
its own messages one: operators filter (`journalctl MESSAGE_ID=...`) and alert on them.

Each id is a random 128-bit value, made once (`systemd-id128 new`) and never changed or reused:
an event whose meaning changes gets a new kind and a new id. migrestore(8) lists them all
(tests/test_messages.py keeps the list, the man page and the events in the code in step).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """One kind of event: its name in the logs, its MESSAGE_ID and what it means."""

    event: str
    message_id: str
    meaning: str


# The one-line `migrestore: error: ...` every failed run ends with (cli).
ERROR = "error"

KINDS = (
    Kind(
        "apply_finished",
        "27c1bd3e950a4deb923897784fd87beb",
        "apply ended: result, GPUs, changes, failures and seconds (priority 3 unless in layout)",
    ),
    Kind(
        ERROR,
        "b11dcfaeab684ed7913f5a4e2bff3555",
        "a run failed: the one-line error, and its hint in MIGRESTORE_HINT",
    ),
    Kind("planned", "ee0f09ce9eca41cba81a89336d5e81d2", "apply planned its steps"),
    Kind(
        "allocations_overridden",
        "c2bec0b378cc4533967c105364744218",
        "apply --force changed GPUs that a pod or job holds MIG devices on, or that it could "
        "not ask about",
    ),
    Kind(
        "slurmd_state_unknown",
        "11d475fa863843bba9858a7fd68928c4",
        "systemd could not say whether slurmd runs: Slurm is asked if scontrol is here (debug)",
    ),
    Kind(
        "planned_after_mig_enabled",
        "d047c7c51b7b4446a811bd7456c0b8fe",
        "apply planned the instances of GPUs whose profile table shows only with MIG on (R535)",
    ),
    Kind("mig_mode_set", "62cbedf677f84b74ab98ddc3e95f743b", "MIG mode was set on a GPU"),
    Kind(
        "resetting_gpus",
        "aae433b1378a4fd0b528a6f032a45206",
        "GPUs are reset so that a pending MIG mode takes effect",
    ),
    Kind(
        "step_done",
        "0eee9f8df41e403bb3f8eb617db9f2b9",
        "a GPU or compute instance was destroyed or created",
    ),
    Kind(
        "step_failed",
        "df25cd9dbd494be1a032b1165b4f755a",
        "a step failed on a GPU (the others go on)",
    ),
    Kind(
        "mig_disabled_after_failure",
        "998e9032719d43ed92609e9a43e82777",
        'on-failure = "disable-mig" turned MIG off on a GPU whose layout failed (or could not)',
    ),
    Kind(
        "gpu_unreadable",
        "4c4c1bbed1b64fc78b66edbf5797aac6",
        "a GPU cannot be read (fallen off the bus, GpuIsLost)",
    ),
    Kind(
        "stopping_gpu_client",
        "a2506a7f4933481f91a19434b37f5e33",
        "a driver-client unit is stopped for a reset or a destroy",
    ),
    Kind("unit_stopped", "8339f1ecf7d24ff0ad9638ca825ca11f", "a unit stopped (debug)"),
    Kind(
        "starting_gpu_clients",
        "f29d73be8dcc44cfad37b371af1d8ac4",
        "the stopped driver clients are started again",
    ),
    Kind(
        "gpu_clients_not_restarted",
        "1b5a7afc7b1b4387b4c8cc32bc447eeb",
        "a stopped driver client did not start again",
    ),
    Kind(
        "starting_units_left_stopped",
        "89a0a9fc672949a68240ec4c22af0d77",
        "units a killed earlier run left stopped are started",
    ),
    Kind("interrupted", "ed531b49a3f641d8bcd79896ecaca880", "SIGTERM or SIGINT: the run unwinds"),
    Kind(
        "nothing_to_restore",
        "aa4801bac2e6482da2bead2e419732af",
        "no layout file, or no entries in it: nothing was done",
    ),
    Kind(
        "driver_in_container",
        "94f9ad7a21b24fb7a1133969ecdb817c",
        "apply --boot or verify: the driver runs in a container, no NVML on the host (exit 5)",
    ),
    Kind(
        "other_mig_owner",
        "1ec1ce1456b347e1a2ade5d1458ecd8c",
        "apply --boot sees another owner of MIG (nvidia-mig-manager enabled), named in OWNER",
    ),
    Kind(
        "profile_renamed",
        "1d11c478de734e4db37aab533cc97e25",
        "a profile name the driver does not know was matched by geometry",
    ),
    Kind(
        "mig_device_uuids_changed",
        "ecc8206cfa7f408aadd5ac6b544b74e2",
        "MIG device UUIDs differ from the previous run's",
    ),
    Kind(
        "consumers_refreshed",
        "68b9fd04d8664d918786a63382e6f9ed",
        "after a live change, the MIG device consumers were restarted",
    ),
    Kind(
        "gpu_consumers_refreshed",
        "c9def01d72e0487fb3343ee5d31cfb16",
        "the units that cache the MIG device list were restarted or rerun",
    ),
    Kind(
        "refresh_unit_skipped",
        "7f1822737d404c1687bf7873852d3f81",
        "a consumer unit was not restarted: not running (debug)",
    ),
    Kind(
        "refresh_failed",
        "5457955ad9a64f56969d277ae5d90d16",
        "restarting the MIG device consumers failed",
    ),
    Kind(
        "device_nodes_created",
        "ea73ba50e92c4835bf39f27e09f1663a",
        "/dev/nvidia-caps nodes were made for new instances",
    ),
    Kind(
        "device_nodes_removed",
        "b3f87f29fb2749ffb74957e0cdf36dae",
        "/dev/nvidia-caps nodes of destroyed instances were removed",
    ),
    Kind(
        "device_nodes_failed",
        "8510a2047f6c457e853ec2b94d9f1590",
        "/dev/nvidia-caps nodes could not be made or removed",
    ),
    Kind(
        "run_record_not_saved",
        "f9379fbfc5f44262958e97b5d77fc4de",
        "the run record could not be written (the restore stands)",
    ),
    Kind(
        "layout_digest_failed",
        "81b6d42243fa4401a323d3cb60e15d8a",
        "the layout file could not be read again for its digest",
    ),
    Kind(
        "simulated_run_leaves_units_alone",
        "aec222bd1aca4b6982b9ff552a8be3e0",
        "a simulated run names the units it would stop or restart",
    ),
    Kind("sd_notify", "384384aba8f94b8384823279a71d4b76", "a notification to systemd (debug)"),
    Kind(
        "metrics_written",
        "e75d4e4c3e954e9bbedfc4a80f988063",
        "the node_exporter textfile metrics were written",
    ),
    Kind(
        "metrics_not_written",
        "f4d3110f20444d6abe8d875d5513a622",
        "the metrics file was not written: no collector directory (debug) or a write error",
    ),
    Kind(
        "verify_skipped",
        "da9c2fa7e93849e382deb3c3ce9c8e96",
        "verify --skip-during-apply found an apply running and did nothing",
    ),
    Kind(
        "entry_selects_no_gpu_here",
        "ec05f6c33c414133aa56b6114f96dcd9",
        "an entry for a known model or device id (or optional) selects no GPU here: skipped",
    ),
    Kind(
        "gpu_replaced",
        "9ec19eac32914e3aa9ec655b178a21f1",
        "a uuid entry's GPU was replaced in its slot by one of its model; not adopted (warning)",
    ),
    Kind(
        "gpu_adopted",
        "ce16286681bc4a319bb4ecb7034d06fd",
        "a uuid entry governs the GPU that replaced its GPU in the same slot (adopt-replaced)",
    ),
    Kind(
        "index_entries_uncounted",
        "579ab585fd2a4e8480770f56760ae9f9",
        "index entries without the expected GPU count ([restore] gpus) (warning)",
    ),
    Kind(
        "reset_refused",
        "dbe44625fa7042a28e3f612a6f6f365b",
        "the first GPU reset was refused; persistence mode is lifted for one more try",
    ),
    Kind(
        "reset_needs_fabric_manager",
        "d676aaaa68414fd28ca95f16eb04c58f",
        "Ampere GPUs on NVSwitches stay pending: their reset needs Fabric Manager, not active",
    ),
    Kind(
        "persistence_off_for_reset",
        "a334c1448fd44d4f912767d178a4595c",
        "persistence mode turned off on a GPU for its reset",
    ),
    Kind(
        "persistence_not_turned_off",
        "cbcbf21e5a3b47dab1662ba8ce79572f",
        "persistence mode could not be turned off: that GPU's reset is refused",
    ),
    Kind(
        "persistence_on_again",
        "ca8bc024e1fc410e8ddd6f8cf3793ea8",
        "persistence mode turned on again after the reset",
    ),
    Kind(
        "persistence_not_restored",
        "2b47f2a2e0ac4cb79b7657229555b2d8",
        "persistence mode could not be turned on again: that GPU fails",
    ),
    Kind(
        "persistence_off_not_noted",
        "4a07a374b58743e7a1ce466e2033e4cc",
        "the state directory could not note persistence mode off (warning)",
    ),
    Kind(
        "persistence_left_off",
        "6a2ac9af688044a1885a6a6ce3e34eec",
        "a killed run left persistence mode off: turned on again first",
    ),
    Kind(
        "start_not_awaited",
        "36a27d75a0514399a3005f08a1318b2d",
        "a unit's start waits for this run's own unit, so it is not awaited",
    ),
    Kind(
        "unit_started",
        "055509223fd8437c8b927da9077790b8",
        "a driver-client unit started again (debug)",
    ),
    Kind(
        "unit_not_pinned",
        "ed16024c5da547ff8cbbccef08e8ed7c",
        "systemd would not keep a unit loaded while its start is awaited (debug)",
    ),
)

MESSAGE_IDS = {kind.event: kind.message_id for kind in KINDS}
