"""``python -m ebpf.bench``. Tool layer: see :mod:`ebpf.bench.cli`."""

from __future__ import annotations

import sys

from ebpf.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
