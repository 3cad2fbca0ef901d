"""``python -m ebpf``: the same CLI as the ``ebpf`` console script."""

from ebpf.cli.main import main

if __name__ == "__main__":
    main()
