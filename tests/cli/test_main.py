"""The ``ebpf`` group: help, version, error conventions, start-up cost, ``python -m ebpf``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

from click.testing import Result

from ebpf import __version__

Invoke = Callable[..., Result]

from ebpf.cli.main import COMMANDS as REGISTERED

COMMANDS = tuple(REGISTERED)


def test_help_lists_every_command(invoke: Invoke) -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.strip()]
    assert listed == list(COMMANDS)


def test_every_command_has_help_and_json(invoke: Invoke) -> None:
    import click

    from ebpf.cli.main import main as group

    ctx = click.Context(group)
    for name in COMMANDS:
        result = invoke(name, "--help")
        assert result.exit_code == 0, name
        command = group.get_command(ctx, name)
        if isinstance(command, click.Group):  # every subcommand has --help and --json
            for sub in command.commands:
                result = invoke(name, sub, "--help")
                assert result.exit_code == 0, (name, sub)
                assert "--json" in result.stdout, (name, sub)
        else:
            assert "--json" in result.stdout, name


def test_version_option(invoke: Invoke) -> None:
    for flag in ("--version", "-V"):
        result = invoke(flag)
        assert result.exit_code == 0
        assert result.stdout == f"ebpf {__version__}\n"


def test_version_command(invoke: Invoke) -> None:
    result = invoke("version")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"ebpf {__version__} (Python ")


def test_version_command_json(invoke: Invoke) -> None:
    result = invoke("version", "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["version"] == __version__
    assert info["python"].count(".") == 2
    assert set(info) == {"version", "python", "platform", "kernel"}


def test_unknown_command_is_a_usage_error(invoke: Invoke) -> None:
    result = invoke("frobnicate")
    assert result.exit_code == 2
    assert "No such command" in result.stderr


def test_unknown_option_is_a_usage_error(invoke: Invoke) -> None:
    result = invoke("version", "--bogus")
    assert result.exit_code == 2


def test_python_dash_m_ebpf() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ebpf", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: ")
    assert "disasm" in proc.stdout
    assert proc.stderr == ""


def test_python_dash_m_ebpf_reports_errors_without_traceback(tmp_path: object) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ebpf", "disasm", "-"],
        input=b"\xff\x00\x00\x00\x00\x00\x00\x00",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == b""
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: <stdin>"), lines


def test_start_up_is_light() -> None:
    """``ebpf --help`` imports no engine, no kernel layer, no pyelftools and no rich."""
    code = (
        "import sys\n"
        "from ebpf.cli.main import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('ebpf.vm', 'ebpf.kernel', 'elftools', 'rich') if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert "HEAVY []" in proc.stderr, proc.stderr
