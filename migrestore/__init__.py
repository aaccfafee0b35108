"""migrestore: restore an NVIDIA GPU host's MIG partitioning at every boot."""

__version__ = "0.1.0"
