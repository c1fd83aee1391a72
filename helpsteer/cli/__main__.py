"""`python -m helpsteer.cli ...` (what torchrun's `-m helpsteer.cli` runs): the `helpsteer` command."""

import sys

from . import main

sys.exit(main())
