"""biolatency: block I/O latency as log2 histograms, printed as bcc prints them. Tool layer.

``block:block_rq_issue`` stamps each request (by device and sector); ``block:block_rq_complete``
adds its latency to a log2 histogram in a hash map (one per disk with ``per_disk``). Slot ``k``
counts latencies in ``[2^k, 2^(k+1) - 1]`` (slot 0: 0 and 1), in microseconds (or ms).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Self

from ebpf.tools._common import LoadedTool, ToolError

__all__ = ["BioLatency", "Histogram", "format_log2_hist", "parse_dev"]

MAX_SLOTS = 27
_SLOTS = struct.Struct(f"={MAX_SLOTS}I")


def parse_dev(spec: str) -> int:
    """``"8:0"``, ``"vda"`` or ``"/dev/vda"`` -> the kernel's ``dev_t`` (``major << 20 | minor``)."""
    if ":" in spec:
        major, minor = (int(x) for x in spec.split(":", 1))
    else:
        path = spec if spec.startswith("/") else f"/dev/{spec}"
        try:
            rdev = os.stat(path).st_rdev
        except OSError as err:
            raise ToolError(f"disk {spec}: {err.strerror}") from err
        major, minor = os.major(rdev), os.minor(rdev)
    return (major << 20) | minor


def dev_name(dev: int) -> str:
    major, minor = dev >> 20, dev & ((1 << 20) - 1)
    try:
        return os.path.basename(os.readlink(f"/sys/dev/block/{major}:{minor}"))
    except OSError:
        return f"{major}:{minor}"


@dataclass(frozen=True)
class Histogram:
    """One log2 histogram: ``slots[k]`` counts values in ``[2^k, 2^(k+1) - 1]``."""

    dev: int
    slots: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.slots)


def _stars(val: int, val_max: int, width: int) -> str:
    n = 0
    while not (n > width * val / val_max - 1 or n > width - 1):
        n += 1
    text = "*" * n
    if val > val_max:
        text = text[:-1] + "+"
    return text


def format_log2_hist(slots: tuple[int, ...] | list[int], unit: str) -> list[str]:
    """The histogram as bcc's ``print_log2_hist`` prints it (rows up to the last non-zero slot)."""
    nonzero = [k for k, v in enumerate(slots) if v]
    if not nonzero:
        return []
    last = nonzero[-1]
    val_max = max(slots)
    lines = [f"     {unit:<19} : count     distribution"]
    for k in range(last + 1):
        low = (1 << k) if k else 0
        high = (1 << (k + 1)) - 1
        lines.append(f"{low:10d} -> {high:<10d} : {slots[k]:<8d} |{_stars(slots[k], val_max, 40):<40}|")
    return lines


class BioLatency:
    """Loaded and attached; :meth:`histograms` reads the kernel's histograms, :meth:`clear` resets them."""

    def __init__(
        self, *, milliseconds: bool = False, per_disk: bool = False, disk: str | None = None
    ) -> None:
        variables: dict[str, int | bytes] = {"in_ms": int(milliseconds), "per_disk": int(per_disk)}
        if disk is not None:
            variables["targ_dev"] = parse_dev(disk)
        self.unit = "msecs" if milliseconds else "usecs"
        self._tool = LoadedTool("biolatency", variables=variables)

    def histograms(self) -> list[Histogram]:
        out = []
        for key, value in self._tool.maps["hists"].items():
            out.append(Histogram(int.from_bytes(key[:4], "little"), _SLOTS.unpack_from(value)))
        out.sort(key=lambda h: h.dev)
        return out

    def clear(self) -> None:
        hists = self._tool.maps["hists"]
        for key in list(hists.keys()):
            try:
                hists.delete(key)
            except KeyError:
                continue

    def close(self) -> None:
        self._tool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
