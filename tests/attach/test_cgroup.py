"""Cgroup programs on a test cgroup (connect4 refusing a blocked address) and socket filters."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ebpf import attach
from ebpf.attach import LinkType
from ebpf.errors import NotSupportedError
from ebpf.spec import AttachType, MapType, ProgramType

from ._util import ArrayMap, counter, links_of, load

pytestmark = pytest.mark.kernel

BLOCKED = "127.0.0.3"

# struct bpf_sock_addr: user_ip4 at offset 4 (network byte order). Return 0 = refuse (EPERM).
CONNECT4 = """
    r2 = *(u32 *)(r1 + 4)
    if r2 == {blocked} goto deny
    r0 = 1
    exit
deny:
    r0 = 0
    exit
"""

CLIENT = """
import socket, sys
s = socket.socket()
s.settimeout(3)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("ok")
except OSError as e:
    print(e.errno)
"""


def connect_from(cgroup: Path, host: str, port: int) -> str:
    """Try a TCP connect from a child process placed in ``cgroup``; "ok" or the errno."""

    def enter() -> None:
        (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    out = subprocess.run(
        [sys.executable, "-S", "-c", CLIENT, host, str(port)],
        capture_output=True,
        text=True,
        timeout=20,
        preexec_fn=enter,
        check=True,
    )
    return out.stdout.strip()


def test_connect4_refuses_blocked_address_until_detached(test_cgroup: Path) -> None:
    blocked = int.from_bytes(socket.inet_aton(BLOCKED), sys.byteorder)
    with socket.socket() as server:
        server.bind(("0.0.0.0", 0))
        server.listen(8)
        port = server.getsockname()[1]
        with load(
            CONNECT4.format(blocked=blocked),
            ProgramType.CGROUP_SOCK_ADDR,
            attach_type=AttachType.CGROUP_INET4_CONNECT,
        ) as prog:
            assert connect_from(test_cgroup, BLOCKED, port) == "ok"
            with attach.cgroup(prog, test_cgroup, AttachType.CGROUP_INET4_CONNECT) as link:
                info = link.info()
                assert info.type == LinkType.CGROUP
                assert info.details["attach_type"] == AttachType.CGROUP_INET4_CONNECT
                assert info.details["cgroup_id"] == os.stat(test_cgroup).st_ino
                assert connect_from(test_cgroup, BLOCKED, port) == str(errno.EPERM)
                assert connect_from(test_cgroup, "127.0.0.1", port) == "ok"
                # a process outside the cgroup is not affected
                with socket.create_connection((BLOCKED, port), timeout=3):
                    pass
                link.detach()
                assert connect_from(test_cgroup, BLOCKED, port) == "ok"
            assert links_of({prog.info().id}) == []


def test_cgroup_skb_counts_egress_and_updates(test_cgroup: Path) -> None:
    with (
        ArrayMap() as m,
        load(
            counter(m.fd, 0, ret=1), ProgramType.CGROUP_SKB, attach_type=AttachType.CGROUP_INET_EGRESS
        ) as p0,
        load(
            counter(m.fd, 1, ret=1), ProgramType.CGROUP_SKB, attach_type=AttachType.CGROUP_INET_EGRESS
        ) as p1,
        socket.socket() as server,
    ):
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        with attach.cgroup(p0, test_cgroup, AttachType.CGROUP_INET_EGRESS) as link:
            assert connect_from(test_cgroup, "127.0.0.1", port) == "ok"
            assert m[0] >= 1  # at least the SYN
            link.update(p1)
            assert link.info().prog_id == p1.info().id
            assert connect_from(test_cgroup, "127.0.0.1", port) == "ok"
            assert m[1] >= 1
        with pytest.raises(ValueError, match="not a cgroup attach type"):
            attach.cgroup(p0, test_cgroup, AttachType.XDP)


def test_socket_filter_drops_then_passes() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with (
        a,
        b,
        ArrayMap() as m,
        load(counter(m.fd, 0, ret=0), ProgramType.SOCKET_FILTER) as drop,
        load(counter(m.fd, 1, ret=0xFFFF), ProgramType.SOCKET_FILTER) as keep,
    ):
        b.setblocking(False)
        with attach.socket_filter(drop, b) as link:
            a.send(b"one")
            with pytest.raises(BlockingIOError):
                b.recv(16)
            assert m[0] == 1
            link.update(keep)
            a.send(b"two")
            assert b.recv(16) == b"two"
            assert m[1] == 1
            with pytest.raises(NotSupportedError, match="SO_ATTACH_BPF makes no BPF link"):
                link.pin("/sys/fs/bpf/nope")
            link.update(drop)
        a.send(b"three")  # detached on close
        assert b.recv(16) == b"three"
        assert m[0] == 1


def test_socket_filter_leak_warns_and_detaches() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    with a, b, ArrayMap() as m, load(counter(m.fd, 0, ret=0), ProgramType.SOCKET_FILTER) as drop:
        b.setblocking(False)
        with pytest.warns(ResourceWarning, match="unclosed link"):
            attach.socket_filter(drop, b)  # dropped at once
        a.send(b"x")
        assert b.recv(4) == b"x"
        assert m[0] == 0


CHILD_TRY = """
import sys
import time
try:
    exec(sys.argv[1])
    print("ok")
except OSError as e:
    print(e.errno)
"""


def run_in(cgroup: Path, code: str) -> str:
    def enter() -> None:
        (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    out = subprocess.run(
        [sys.executable, "-S", "-c", CHILD_TRY, code],
        capture_output=True,
        text=True,
        timeout=20,
        preexec_fn=enter,
        check=True,
    )
    return out.stdout.strip()


@pytest.mark.parametrize(
    ("prog_type", "attach_type", "code"),
    [
        (
            ProgramType.CGROUP_SOCK,
            AttachType.CGROUP_INET_SOCK_CREATE,
            "import socket; socket.socket().close()",
        ),
        (ProgramType.CGROUP_DEVICE, AttachType.CGROUP_DEVICE, "open('/dev/null', 'rb').close()"),
        (ProgramType.CGROUP_SYSCTL, AttachType.CGROUP_SYSCTL, "open('/proc/sys/kernel/ostype').read()"),
    ],
)
def test_cgroup_hooks_deny_then_allow(test_cgroup: Path, prog_type, attach_type, code: str) -> None:  # type: ignore[no-untyped-def]
    with ArrayMap() as m, load(counter(m.fd, ret=0), prog_type, attach_type=attach_type) as deny:
        assert run_in(test_cgroup, code) == "ok"
        with attach.cgroup(deny, test_cgroup, attach_type) as link:
            assert link.info().details["attach_type"] == attach_type
            assert run_in(test_cgroup, code) == str(errno.EPERM)
            assert m[0] >= 1
        assert run_in(test_cgroup, code) == "ok"
        assert links_of({deny.info().id}) == []


def test_sk_msg_verdict_on_a_sockmap() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        client = socket.create_connection(server.getsockname(), timeout=3)
        peer, _ = server.accept()
        with (
            client,
            peer,
            ArrayMap() as m,
            ArrayMap(max_entries=2, value_size=4, map_type=MapType.SOCKMAP) as sockets,
            load(
                counter(m.fd, 0, ret=1), ProgramType.SK_MSG, attach_type=AttachType.SK_MSG_VERDICT
            ) as passing,
            load(
                counter(m.fd, 1, ret=0), ProgramType.SK_MSG, attach_type=AttachType.SK_MSG_VERDICT
            ) as dropping,
            attach.sockmap(passing, sockets, AttachType.SK_MSG_VERDICT) as link,
        ):
            sockets[0] = client.fileno().to_bytes(4, sys.byteorder)
            info = link.info()
            assert info.type == LinkType.SOCKMAP and info.details["attach_type"] == AttachType.SK_MSG_VERDICT
            client.sendall(b"hello")
            assert peer.recv(16) == b"hello"
            assert m[0] == 1  # SK_PASS
            link.update(dropping)
            # the kernel gives a socket the map's programs when it enters the map: a socket
            # added after the update gets the new one
            second = socket.create_connection(server.getsockname(), timeout=3)
            second_peer, _ = server.accept()
            with second, second_peer:
                sockets[1] = second.fileno().to_bytes(4, sys.byteorder)
                with pytest.raises(PermissionError):  # SK_DROP: sendmsg fails with EACCES
                    second.send(b"dropped")
                assert m[1] == 1


def test_reuseport_program_drops_then_passes() -> None:
    def member(port: int = 0) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", port))
        s.setblocking(False)
        return s

    with (
        member() as a,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender,
        ArrayMap() as m,
        load(
            counter(m.fd, 0, ret=0), ProgramType.SK_REUSEPORT, attach_type=AttachType.SK_REUSEPORT_SELECT
        ) as drop,
        load(
            counter(m.fd, 1, ret=1), ProgramType.SK_REUSEPORT, attach_type=AttachType.SK_REUSEPORT_SELECT
        ) as keep,
    ):
        port = a.getsockname()[1]
        with member(port) as b, attach.reuseport(drop, a) as link:
            sender.sendto(b"x", ("127.0.0.1", port))
            time.sleep(0.05)
            for s in (a, b):
                with pytest.raises(BlockingIOError):
                    s.recv(4)
            assert m[0] == 1  # SK_DROP
            link.update(keep)
            sender.sendto(b"y", ("127.0.0.1", port))
            time.sleep(0.05)
            got = []
            for s in (a, b):
                try:
                    got.append(s.recv(4))
                except BlockingIOError:
                    pass
            assert got == [b"y"]  # SK_PASS: the kernel's hash picks one member
            assert m[1] == 1
