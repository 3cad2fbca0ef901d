"""Registering ``struct_ops`` maps: kernel callbacks implemented by BPF programs. Above the kernel line.

A ``SEC(".struct_ops")`` / ``SEC(".struct_ops.link")`` variable of an object (e.g. a
``tcp_congestion_ops``) becomes a STRUCT_OPS map whose value is the kernel's
``bpf_struct_ops_<struct>`` with each function pointer set to a loaded program's fd
(:meth:`ebpf.kernel.Collection.struct_ops_value`). Registration is:

* ``.struct_ops.link`` maps (``BPF_F_LINK``): ``BPF_MAP_UPDATE_ELEM`` stores the value, then
  ``BPF_LINK_CREATE`` with the map's fd and ``BPF_STRUCT_OPS`` registers it; closing the link
  unregisters (libbpf's ``bpf_map__attach_struct_ops``);
* plain ``.struct_ops`` maps: ``BPF_MAP_UPDATE_ELEM`` registers at once, and deleting the
  element unregisters; the returned link does that on close.
"""

from __future__ import annotations

import os
from typing import Any

from ebpf.attach import _abi
from ebpf.attach.link import FDLink, Link, LinkInfo, ProgramLike, _LinkBase
from ebpf.errors import NotSupportedError
from ebpf.kernel.fd import FD
from ebpf.spec import AttachType, MapFlags

__all__ = ["StructOpsRegistration", "struct_ops"]

_KEY = bytes(4)


class StructOpsRegistration(_LinkBase):
    """A plain ``.struct_ops`` map registered by a map update; close unregisters it (map delete)."""

    def __init__(self, map_: Any, name: str) -> None:
        self._map = map_
        self.name = name
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def update(self, program: ProgramLike, *, old: ProgramLike | None = None) -> None:
        raise NotSupportedError("updating a struct_ops registration", detail="re-register the map instead")

    def pin(self, path: str | os.PathLike[str]) -> None:
        raise NotSupportedError("pinning a struct_ops registration", detail="use a .struct_ops.link map")

    def unpin(self) -> None:
        return None

    def detach(self) -> None:
        self.close()

    def info(self) -> LinkInfo:
        raise NotSupportedError("link info of a struct_ops registration", detail="it is a map, not a link")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._map.delete(_KEY)

    def __repr__(self) -> str:
        return f"StructOpsRegistration({self.name!r}{', closed' if self._closed else ''})"

    def __del__(self) -> None:
        self._warn_unclosed()


def struct_ops(collection: Any, map_name: str) -> Link:
    """Register the STRUCT_OPS map ``map_name`` of a loaded :class:`ebpf.kernel.Collection`.

    Raises:
        KeyError: no such map.
        BPFError: the kernel refused the value or the registration, with its errno (a map
            error such as ``ENOTSUP`` for a struct_ops type that cannot be registered, or
            ``EEXIST`` for a name already registered; a ``SyscallError`` from the link).
    """
    value = collection.struct_ops_value(map_name)
    m = collection.maps[map_name]
    m.update(_KEY, value)
    if not m.info().flags & MapFlags.LINK:
        return StructOpsRegistration(m, map_name)
    fd = _abi.link_create(m.fd, 0, AttachType.STRUCT_OPS)
    return FDLink(FD(fd), kind=f"struct_ops {map_name}")
