"""``python -m worker``: the same as ``sgen-ops worker``."""

import sys

from sgen_ops.cli import main

if __name__ == "__main__":
    sys.exit(main(["worker", *sys.argv[1:]]))
