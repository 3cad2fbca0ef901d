"""The README's Python examples run as written (the kernel one where bpf() works)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_user_space_example(capsys: pytest.CaptureFixture[str]) -> None:
    namespace: dict[str, object] = {}
    exec(compile(python_blocks()[0], "README.md", "exec"), namespace)  # noqa: S102 - our own README
    first, typed = capsys.readouterr().out.splitlines()
    assert first.startswith("1 ")  # XDP_DROP: 192.0.2.7 is in the blocked prefix
    assert typed == "[rule_counter(packets=100, bytes=4600)]"


@pytest.mark.kernel
def test_kernel_example(capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess
    import threading

    namespace: dict[str, object] = {}
    exec(compile(python_blocks()[0], "README.md", "exec"), namespace)  # noqa: S102
    capsys.readouterr()
    stop = threading.Event()

    def exec_loop() -> None:  # execs for the example's one-second poll to see
        while not stop.wait(0.05):
            subprocess.run(["/bin/true"], check=True)

    worker = threading.Thread(target=exec_loop)
    worker.start()
    try:
        exec(compile(python_blocks()[1], "README.md", "exec"), namespace)  # noqa: S102
    finally:
        stop.set()
        worker.join()
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[1:] == ["/bin/true"] for line in lines), lines[:5]
