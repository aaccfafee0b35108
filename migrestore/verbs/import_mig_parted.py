"""`import-mig-parted`: one label of a mig-parted config printed as a layout file."""

from __future__ import annotations

import argparse
from pathlib import Path

from migrestore import config, migparted
from migrestore.context import Context
from migrestore.errors import ConfigError, ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The config file, which label of it, and the model of entries without a filter."""
    parser.add_argument("file", help="mig-parted YAML config (version: v1)")
    parser.add_argument(
        "--config-name", metavar="LABEL", help="which entry of mig-configs to convert"
    )
    parser.add_argument(
        "--model", metavar="NAME", help="GPU model for entries without a device-filter"
    )


def run(ctx: Context, args: argparse.Namespace) -> int:
    """Print the converted layout file on stdout."""
    path = Path(args.file)
    try:
        text = config.read_regular_file(path).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: cannot read: not UTF-8 text") from None
    print(migparted.convert(text, str(path), args.config_name, args.model), end="")
    return ExitCode.OK
