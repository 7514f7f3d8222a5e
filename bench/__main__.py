"""``python -m bench [options]``, from the repository root: the same as ``python bench/bench.py``."""

import sys

from .cli import main

if __name__ == '__main__':
    sys.exit(main())
