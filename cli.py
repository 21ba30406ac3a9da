"""The command lines of train.py, bench.py and robot.py, built from the configs' `option()` metadata.

dbp.py holds the configs (each field's default, meaning and range, written once); this module turns a config
class into flags, parses them, and ends the program with one line on a bad value. Only the entry points use it:
dbp.py and dbpo.py raise, and never exit.
"""
import argparse
import dataclasses
import sys
from dataclasses import dataclass

import torch

from dbp import Config, ConfigError, option, range_rule


def make_parser(description):
    """argparse whose errors are one line (no usage dump) and that keeps only the flags given."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     argument_default=argparse.SUPPRESS)
    parser.error = lambda message: sys.exit(f"error: {message} (--help lists every flag)")
    return parser


def add_config_args(parser, cls):
    """One --flag per field of the dataclass cls, with its meaning, range and default."""
    for f in dataclasses.fields(cls):
        flag, meta = "--" + f.name.replace("_", "-"), f.metadata
        rule = "" if f.type in (bool, str) else f"; {range_rule(meta).replace('must be ', '')}"
        if f.type is bool:
            parser.add_argument(flag, action="store_true", help=meta["help"])
        elif f.type is tuple:
            parser.add_argument(flag, type=float, nargs=meta["nargs"] or len(f.default), metavar="V",
                                help=f"{meta['help']} (default: {' '.join(map(str, f.default))}{rule})")
        else:
            parser.add_argument(flag, type=f.type, metavar=f.name.upper(),
                                help=f"{meta['help']} (default: {f.default!r}{rule})")
    return parser


def build_config(cls, given):
    """cls(**given) for flags parsed by add_config_args; a value out of range ends the program with one line."""
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})
    except ConfigError as e:
        value = " ".join(map(str, e.value)) if isinstance(e.value, tuple) else e.value
        sys.exit(f"error: --{e.name.replace('_', '-')} {value}: {e.rule}")


def parse(cls, description, argv=None):
    """The config of an entry point whose flags are exactly cls's fields."""
    return build_config(cls, vars(add_config_args(make_parser(description), cls).parse_args(argv)))


@dataclass
class SeedConfig(Config):
    seed: int = option(0, "seed of everything random: demos, initialization, batches, noise z and evaluation "
                       "resets (0-99 keep demo and evaluation resets disjoint)", ge=0, le=99)


def resolve_device(name):
    """--device -> torch.device: 'auto' is cuda when one is available, else cpu; 'cpu', 'cuda', 'cuda:N', 'mps'.
    A device this machine lacks is a ValueError that says what it has."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError("must be auto, cpu, cuda, cuda:N or mps") from None
    have = {"cpu": True, "cuda": torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
            "mps": torch.backends.mps.is_available()}
    if not have.get(device.type, False):
        cuda = f"{torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available() else "no CUDA device"
        raise ValueError(f"not available here ({cuda}, MPS {'available' if have['mps'] else 'not available'})")
    return device


@dataclass
class DeviceConfig(Config):
    device: str = option("auto", "where the networks run: auto (cuda if available, else cpu), cpu, cuda, cuda:N or "
                         "mps; checkpoints load on any device")

    def check(self):
        try:
            resolve_device(self.device)
        except ValueError as e:
            raise ConfigError("device", self.device, str(e)) from None
