"""``python -m tools.synth --out DIR ...``: see :mod:`tools.synth.dataset`."""

import sys

from tools.synth.dataset import main

if __name__ == "__main__":
    sys.exit(main())
