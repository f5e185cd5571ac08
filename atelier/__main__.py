"""`python -m atelier …`: the same command line as the `atelier` console script."""

import sys

from atelier.cli import main

sys.exit(main())
