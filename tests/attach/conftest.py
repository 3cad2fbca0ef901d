"""Fixtures for the attach tests: a veth pair into a fresh network namespace, a test cgroup.

Test code may run ``ip``; the library never does. Every name includes the pid and everything
is removed afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"))


@pytest.fixture(scope="session", autouse=True)
def no_leftover_links() -> Iterator[None]:
    """After the session: no link in the kernel runs a program these tests loaded."""
    yield
    from ebpf.attach import link_ids, open_link
    from ebpf.errors import SyscallError
    from ebpf.kernel import Program

    from ._util import program_name

    leftovers = []
    for lid in link_ids():
        try:
            with open_link(lid) as link, Program.from_id(link.info().prog_id) as prog:
                if prog.name == program_name():
                    leftovers.append((lid, link.info()))
        except (SyscallError, ValueError):
            continue  # gone meanwhile, or not ours to open
    assert leftovers == [], f"links left behind by the attach tests: {leftovers}"


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Veth:
    netns: str
    host: str  # in this (root) namespace
    peer: str  # in ``netns``
    host_ip: str
    peer_ip: str

    @property
    def host_index(self) -> int:
        return int(Path(f"/sys/class/net/{self.host}/ifindex").read_text())

    def ping_peer(self, count: int = 3) -> bool:
        """Ping the namespace side from here; True if every reply came back."""
        return (
            run("ping", "-c", str(count), "-i", "0.2", "-W", "1", "-q", self.peer_ip, check=False).returncode
            == 0
        )

    def ping_host_from_peer(self, count: int = 3) -> bool:
        cmd = ("ip", "netns", "exec", self.netns, "ping", "-c", str(count), "-i", "0.2", "-W", "1", "-q")
        return run(*cmd, self.host_ip, check=False).returncode == 0


@pytest.fixture
def veth() -> Iterator[Veth]:
    if shutil.which("ip") is None or shutil.which("ping") is None:
        pytest.skip("needs iproute2 (ip) and iputils-ping (ping) to build and exercise a veth pair")
    pid = os.getpid()
    ns, host, peer = f"ebpfat{pid}", f"eaa{pid}", f"eab{pid}"
    b, c = (pid >> 6) & 0xFF, (pid & 0x3F) * 4
    host_ip, peer_ip = f"10.211.{b}.{c + 1}", f"10.211.{b}.{c + 2}"
    run("ip", "netns", "add", ns)
    try:
        run("ip", "link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns)
        run("ip", "addr", "add", f"{host_ip}/30", "dev", host)
        run("ip", "link", "set", host, "up")
        run("ip", "-n", ns, "addr", "add", f"{peer_ip}/30", "dev", peer)
        run("ip", "-n", ns, "link", "set", peer, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        yield Veth(ns, host, peer, host_ip, peer_ip)
    finally:
        run("ip", "link", "del", host, check=False)
        run("ip", "netns", "del", ns, check=False)


@pytest.fixture
def test_cgroup() -> Iterator[Path]:
    from ebpf.attach import cgroup2_root

    root = Path(cgroup2_root())
    path = root / f"ebpf-attach-{os.getpid()}"
    path.mkdir()
    try:
        yield path
    finally:
        # move any process we put there back to the root before removing the cgroup
        for pid in (path / "cgroup.procs").read_text().split():
            try:
                (root / "cgroup.procs").write_text(pid)
            except OSError:
                pass
        path.rmdir()


@pytest.fixture
def bpffs_dir() -> Iterator[Path]:
    """A folder path below /sys/fs/bpf for pins (``Link.pin`` creates it, mounting bpffs if needed)."""
    path = Path(f"/sys/fs/bpf/ebpf-attach-{os.getpid()}")
    try:
        yield path
    finally:
        if path.exists():
            for child in path.iterdir():
                child.unlink()
            path.rmdir()


DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/probed.c built with gcc (PIE): target_add() and the semaphore-guarded ebpftest:tick."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to build the probed program")
    if not any(
        Path(p).exists() for p in ("/usr/include/x86_64-linux-gnu/sys/sdt.h", "/usr/include/sys/sdt.h")
    ):
        pytest.skip("needs <sys/sdt.h> (apt-get install systemtap-sdt-dev)")
    out = tmp_path_factory.mktemp("probed") / "probed"
    subprocess.run(["gcc", "-O1", "-o", str(out), str(DATA / "probed.c")], check=True, timeout=60)
    return out


def run_probed(binary: Path, n: int) -> None:
    subprocess.run([str(binary), str(n)], check=True, timeout=10)
