"""`python -m cronbus.agents.cli` is the `cronbus` command."""

import sys

from cronbus.agents.cli.main import main

sys.exit(main())
