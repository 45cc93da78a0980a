"""``python -m lmfs.cli``: the same as the ``lmfs`` command."""

import sys

from lmfs.cli import main

sys.exit(main())
