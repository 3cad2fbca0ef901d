"""Shared test configuration.

Kernel gating (STYLE §8): tests marked ``@pytest.mark.kernel`` need a working bpf().
When it is unavailable they are skipped with the reason from
``ebpf.kernel.features.bpf_unavailable_reason()`` (decided once per session), or they
fail when ``EBPF_REQUIRE_KERNEL=1`` is set (CI on a machine that must run them).

Fixtures: ``skip_if_not_supported`` and ``require_kernel``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

# numpy's OpenBLAS starts a worker thread per extra CPU when imported; a process-directed
# signal (bpf_send_signal in tests/differential/test_helpers_misc_kernel.py) would then go to
# a thread that does not block it. One BLAS thread: the test process stays single-threaded.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _require_kernel() -> bool:
    return os.environ.get("EBPF_REQUIRE_KERNEL", "").strip() not in ("", "0")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kernel") is None:
        return
    from ebpf.kernel.features import bpf_unavailable_reason

    reason = bpf_unavailable_reason()
    if reason is None:
        return
    if _require_kernel():
        pytest.fail(f"EBPF_REQUIRE_KERNEL=1 but bpf() is unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


@contextmanager
def _skip_if_not_supported() -> Iterator[None]:
    from ebpf.errors import NotSupportedError
    from ebpf.kernel.version import kernel_version

    try:
        yield
    except NotSupportedError as err:
        if err.min_kernel:
            running = kernel_version()
            if running >= _version(err.min_kernel):
                pytest.fail(
                    f"{err.feature} reported unsupported on Linux {running} >= {err.min_kernel}: {err}"
                )
        pytest.skip(str(err))


@pytest.fixture
def skip_if_not_supported() -> Callable[[], AbstractContextManager[None]]:
    """``with skip_if_not_supported(): ...``: NotSupportedError skips, unless the kernel is new enough."""
    return _skip_if_not_supported


@pytest.fixture
def require_kernel() -> Callable[[str, str], None]:
    """``require_kernel("5.2", "ctx_in for test_run")``: skip on older kernels, with the reason."""

    def require(min_version: str, feature: str) -> None:
        from ebpf.kernel.version import kernel_version

        running = kernel_version()
        if running < _version(min_version):
            pytest.skip(
                f"requires Linux >= {min_version} for {feature}; running {'.'.join(map(str, running))}"
            )

    return require


@pytest.fixture(autouse=True)
def _no_by_name_pins_left() -> Iterator[None]:
    """Remove ``LIBBPF_PIN_BY_NAME`` pins a test left at the bpffs root (libbpf's and our default
    pin root): bpftool loadall and loads without ``pin_root`` of the corpus objects create
    ``/sys/fs/bpf/<map name>``, and a stale one would be reused by the next load."""
    import os

    root = "/sys/fs/bpf"
    try:
        before = set(os.listdir(root))
    except OSError:
        yield
        return
    yield
    try:
        created = set(os.listdir(root)) - before
    except OSError:
        return
    for name in created:
        path = os.path.join(root, name)
        if name in _CORPUS_PINNED_MAPS and os.path.isfile(path):
            os.unlink(path)


_CORPUS_PINNED_MAPS = {"blocklist", "exec_count"}  # maps declared with LIBBPF_PIN_BY_NAME in tests/data
