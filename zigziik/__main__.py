"""``python -m zigziik``: the same as the ``zigziik`` command."""

import sys

from .cli import main

sys.exit(main())
