"""``python -m k2hr3_osnl``: the same as the ``k2hr3-osnl`` command."""

import sys

from k2hr3_osnl.commands.cli import main

sys.exit(main())
