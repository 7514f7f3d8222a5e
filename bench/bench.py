"""``python bench/bench.py [options]`` (``make bench``): runs the bench package, see bench/README.md.

Run as a script, Python puts bench/ itself first on sys.path; the package is imported from the repository
root instead (the same as ``python -m bench`` there).
"""

import os
import sys

if __name__ == '__main__':
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    from bench.cli import main
    sys.exit(main())
