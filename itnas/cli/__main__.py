"""`python -m itnas.cli`: the console script (torchrun starts `itnas train` this way)."""

import sys

from itnas.cli import main

sys.exit(main())
