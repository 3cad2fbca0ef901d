"""Fixtures of the ELF loader tests: the committed corpus in tests/data/elf."""

from __future__ import annotations

from pathlib import Path

import pytest

from ebpf.elf import load_collection_spec
from ebpf.spec import CollectionSpec

DATA = Path(__file__).resolve().parent.parent / "data" / "elf"


def corpus(name: str) -> Path:
    return DATA / name


@pytest.fixture(scope="session")
def load() -> object:
    cache: dict[str, CollectionSpec] = {}

    def _load(name: str) -> CollectionSpec:
        if name not in cache:
            cache[name] = load_collection_spec(DATA / name)
        return cache[name].copy()

    return _load
