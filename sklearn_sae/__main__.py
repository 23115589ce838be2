"""``python -m sklearn_sae``: the command line of `sklearn_sae._cli`."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
