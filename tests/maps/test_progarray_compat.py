"""Program-array compatibility (``ProgArrayMap`` Rule 3) against Linux 6.18: which programs may
share one ``BPF_MAP_TYPE_PROG_ARRAY`` (program type, ``xdp.frags``, expected attach type; the
owner is set by the first program and stays), and the runtime's own cases."""

from __future__ import annotations

import errno
import struct

import pytest

from ebpf.isa import assemble
from ebpf.maps import MapDef, create
from ebpf.maps._errors import InvalidMapArgumentError, MapError, MapFullError
from ebpf.maps.progarray import BPF_F_SLEEPABLE, BPF_F_XDP_HAS_FRAGS, ProgArrayMap, ProgArrayOwner
from ebpf.runtime import Collection
from ebpf.spec import AttachType, CollectionSpec, MapSpec, MapType, ProgramSpec, ProgramType

X, TC, ACT, SK, CG = (
    ProgramType.XDP,
    ProgramType.SCHED_CLS,
    ProgramType.SCHED_ACT,
    ProgramType.SOCKET_FILTER,
    ProgramType.CGROUP_SKB,
)
A = AttachType
# name -> (type, prog_flags, expected attach type)
KINDS: dict[str, tuple[ProgramType, int, AttachType | None]] = {
    "xdp": (X, 0, None),
    "xdp_frags": (X, BPF_F_XDP_HAS_FRAGS, None),
    "xdp_eat_xdp": (X, 0, A.XDP),
    "xdp_devmap": (X, 0, A.XDP_DEVMAP),
    "tc": (TC, 0, None),
    "tc_tcx_ingress": (TC, 0, A.TCX_INGRESS),
    "act": (ACT, 0, None),
    "socket": (SK, 0, None),
    "cgskb_ingress": (CG, 0, A.CGROUP_INET_INGRESS),
    "cgskb_egress": (CG, 0, A.CGROUP_INET_EGRESS),
    "cgskb_none": (CG, 0, None),
}
PAIRS = [
    ("xdp", "xdp_frags"),
    ("xdp_frags", "xdp"),
    ("xdp_frags", "xdp_frags"),
    ("xdp", "tc"),
    ("tc", "act"),
    ("xdp", "xdp_devmap"),
    ("xdp", "xdp_eat_xdp"),
    ("tc", "tc_tcx_ingress"),
    ("cgskb_ingress", "cgskb_egress"),
    ("cgskb_none", "cgskb_ingress"),
    ("socket", "socket"),
]
RET0 = "r0 = 0\nexit"


def k(i: int) -> bytes:
    return struct.pack("<I", i)


def runtime_programs() -> Collection:
    programs = {
        name: ProgramSpec(name, "x", t, assemble(RET0), flags=flags, attach_type=eat)
        for name, (t, flags, eat) in KINDS.items()
    }
    return Collection(CollectionSpec(programs=programs, license="GPL"), deterministic=True)


def runtime_updates(names: list[str]) -> list[int]:
    with runtime_programs() as coll:
        m = create(MapDef(MapType.PROG_ARRAY, 4, 4, 4))
        assert isinstance(m, ProgArrayMap)
        out = []
        for i, name in enumerate(names):
            try:
                m.update_prog(k(i), coll.programs[name])
                out.append(0)
            except InvalidMapArgumentError as err:
                out.append(-(err.errno or 0))
        return out


def kernel_updates(names: list[str]) -> list[int]:
    from ebpf.kernel import Map as KernelMap
    from ebpf.kernel.program import Program

    out = []
    with KernelMap.create(MapSpec("pa", MapType.PROG_ARRAY, 4, 4, 4)) as km:
        for i, name in enumerate(names):
            t, flags, eat = KINDS[name]
            eat_int = None if eat is None else int(eat)
            with Program.load(assemble(RET0), t, prog_flags=flags, expected_attach_type=eat_int) as prog:
                try:
                    km.update(k(i), struct.pack("<I", prog.fd))
                    out.append(0)
                except MapError as err:
                    out.append(-(err.errno or 0))
    return out


@pytest.mark.kernel
@pytest.mark.parametrize("pair", PAIRS, ids=["-".join(p) for p in PAIRS])
def test_pairs_match_the_kernel(pair: tuple[str, str]) -> None:
    names = [*pair, pair[0]]
    theirs = kernel_updates(names)
    assert runtime_updates(names) == theirs
    assert theirs[0] == 0 and theirs[2] == 0


@pytest.mark.kernel
def test_the_owner_stays_after_the_array_empties() -> None:
    from ebpf.kernel import Map as KernelMap
    from ebpf.kernel.program import Program

    spec = MapSpec("pa", MapType.PROG_ARRAY, 4, 4, 4)
    with (
        KernelMap.create(spec) as km,
        Program.load(assemble(RET0), X) as xdp,
        Program.load(assemble(RET0), TC) as tc,
    ):
        with pytest.raises(MapFullError) as big:  # refused before the owner check: no owner
            km.update(k(9), struct.pack("<I", tc.fd))
        km.update(k(0), struct.pack("<I", xdp.fd))
        km.delete(k(0))
        with pytest.raises(InvalidMapArgumentError) as kernel_err:
            km.update(k(0), struct.pack("<I", tc.fd))
    assert (big.value.errno, kernel_err.value.errno) == (errno.E2BIG, errno.EINVAL)
    with runtime_programs() as coll:
        m = create(MapDef(MapType.PROG_ARRAY, 4, 4, 4))
        assert isinstance(m, ProgArrayMap)
        with pytest.raises(MapFullError):
            m.update_prog(k(9), coll.programs["tc"])
        assert m.owner is None
        m.update_prog(k(0), coll.programs["xdp"])
        m.delete(k(0))
        with pytest.raises(InvalidMapArgumentError) as ours:
            m.update_prog(k(0), coll.programs["tc"])
        assert ours.value.errno == errno.EINVAL and m.tail_call_target(0) is None


@pytest.mark.kernel
def test_a_program_using_the_array_owns_it_from_its_load() -> None:
    """The kernel checks the program arrays a program references when it loads it."""
    from ebpf.errors import BPFError
    from ebpf.kernel import Map as KernelMap
    from ebpf.kernel.program import Program

    with KernelMap.create(MapSpec("pa", MapType.PROG_ARRAY, 4, 4, 4)) as km:
        user = f"r2 = map_fd({km.fd}) ll\nr3 = 0\ncall 12\nr0 = 0\nexit"
        with Program.load(assemble(user), X), Program.load(assemble(RET0), TC) as tc:
            with pytest.raises(BPFError) as update_err:
                km.update(k(0), struct.pack("<I", tc.fd))
            with pytest.raises(BPFError) as load_err:
                Program.load(assemble(user), TC).close()
    assert getattr(update_err.value, "errno", None) == errno.EINVAL
    assert getattr(load_err.value, "errno", None) == errno.EINVAL
    m = create(MapDef(MapType.PROG_ARRAY, 4, 4, 4))
    assert isinstance(m, ProgArrayMap)
    m.claim(ProgramSpec("user", "xdp", X, assemble(RET0)))  # what a loader does for a user
    with runtime_programs() as coll, pytest.raises(InvalidMapArgumentError):
        m.update_prog(k(0), coll.programs["tc"])


def test_owner_records() -> None:
    spec = ProgramSpec("p", "xdp.frags", X, assemble(RET0), flags=BPF_F_XDP_HAS_FRAGS, attach_type=A.XDP)
    assert ProgArrayOwner.of(spec) == ProgArrayOwner(X, True, False, int(A.XDP))
    sleepy = ProgramSpec("s", "syscall", ProgramType.SYSCALL, assemble(RET0), flags=BPF_F_SLEEPABLE)
    assert ProgArrayOwner.of(sleepy) == ProgArrayOwner(ProgramType.SYSCALL, False, True, 0)
    assert ProgArrayOwner.of("not a program") is None and ProgArrayOwner.of(object()) is None
    m = create(MapDef(MapType.PROG_ARRAY, 4, 4, 2))
    assert isinstance(m, ProgArrayMap)
    m.update_prog(k(0), "anything")  # objects that describe no program are not checked
    assert m.owner is None
    m.update_prog(k(1), sleepy)
    with pytest.raises(InvalidMapArgumentError, match="SYSCALL"):
        m.update_prog(k(0), ProgramSpec("q", "syscall", ProgramType.SYSCALL, assemble(RET0)))
    assert m.lookup_prog(k(0)) == "anything"  # a refused update leaves the slot
    m.close()
    assert m.owner is None


def user_collection(second_flags: int) -> CollectionSpec:
    """Two XDP programs that tail-call through one program array; the second's prog_flags vary."""
    from runtime._build import program  # tests/ is on sys.path

    text = "r2 = 0 ll\nr3 = 0\ncall 12\nr0 = 0\nexit"
    first = program("first", text, [("map", "jump")], X)
    second = program("second", text, [("map", "jump")], X)
    second.flags = second_flags
    return CollectionSpec(
        programs={"first": first, "second": second},
        maps={"jump": MapSpec("jump", MapType.PROG_ARRAY, 4, 4, 2)},
        license="GPL",
    )


@pytest.mark.kernel
@pytest.mark.parametrize("flags", [0, BPF_F_XDP_HAS_FRAGS], ids=["same", "frags"])
def test_loading_a_second_kind_of_user_fails_as_in_the_kernel(flags: int) -> None:
    from ebpf.errors import BPFError
    from ebpf.kernel.collection import Collection as KernelCollection

    spec = user_collection(flags)
    kernel_ok = True
    try:
        KernelCollection(spec.copy()).close()
    except BPFError as err:
        kernel_ok = False
        assert "EINVAL" in str(err) or getattr(err, "errno", None) == errno.EINVAL
    ours_ok = True
    try:
        Collection(spec.copy(), deterministic=True).close()
    except InvalidMapArgumentError as err:
        ours_ok = False
        assert err.errno == errno.EINVAL and "xdp.frags" in str(err)
    assert ours_ok == kernel_ok == (flags == 0)


STORAGE_TYPES = [MapType.CGROUP_STORAGE, MapType.PERCPU_CGROUP_STORAGE]
STORAGE_PAIRS = [("a", "b"), ("a", None), (None, "a"), ("a", "a")]


def storage_user_text(ref: str) -> str:
    return f"r1 = {ref} ll\nr2 = 0\ncall 81\nr0 = 1\nexit"  # bpf_get_local_storage


@pytest.mark.kernel
@pytest.mark.parametrize("map_type", STORAGE_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("pair", STORAGE_PAIRS, ids=lambda p: f"{p[0]}-{p[1]}")
def test_cgroup_storage_users_match_the_kernel(
    map_type: MapType, pair: tuple[str | None, str | None]
) -> None:
    """Programs using a legacy cgroup storage may share an array only with programs using the
    same storage of that kind, or none (a first program without storage takes none)."""
    from ebpf.kernel import Map as KernelMap
    from ebpf.kernel.program import Program
    from runtime._build import program  # tests/ is on sys.path

    cg, ingress = ProgramType.CGROUP_SKB, int(A.CGROUP_INET_INGRESS)
    theirs = []
    with (
        KernelMap.create(MapSpec("a", map_type, 8, 8, 0)) as ka,
        KernelMap.create(MapSpec("b", map_type, 8, 8, 0)) as kb,
        KernelMap.create(MapSpec("pa", MapType.PROG_ARRAY, 4, 4, 4)) as km,
    ):
        fds = {"a": ka.fd, "b": kb.fd}
        for i, name in enumerate(pair):
            text = "r0 = 1\nexit" if name is None else storage_user_text(f"map_fd({fds[name]})")
            with Program.load(assemble(text), cg, expected_attach_type=ingress) as prog:
                try:
                    km.update(k(i), struct.pack("<I", prog.fd))
                    theirs.append(0)
                except MapError as err:
                    theirs.append(-(err.errno or 0))
    programs = {}
    for i, name in enumerate(pair):
        if name is None:
            pspec = program(f"p{i}", "r0 = 1\nexit", [], cg)
        else:
            pspec = program(f"p{i}", storage_user_text("0"), [("map", name)], cg)
        pspec.attach_type = A.CGROUP_INET_INGRESS
        programs[pspec.name] = pspec
    spec = CollectionSpec(
        programs=programs,
        maps={n: MapSpec(n, map_type, 8, 8, 0) for n in ("a", "b")},
        license="GPL",
    )
    ours = []
    with Collection(spec, deterministic=True) as coll:
        m = create(MapDef(MapType.PROG_ARRAY, 4, 4, 4))
        assert isinstance(m, ProgArrayMap)
        for i in range(len(pair)):
            try:
                m.update_prog(k(i), coll.programs[f"p{i}"])
                ours.append(0)
            except InvalidMapArgumentError as err:
                ours.append(-(err.errno or 0))
    assert ours == theirs
    assert theirs == [0, 0 if pair[1] is None or pair[1] == pair[0] else -errno.EINVAL]
