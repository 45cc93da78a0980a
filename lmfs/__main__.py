"""``python -m lmfs`` (e.g. under ``torchrun -m lmfs train``): the same as the ``lmfs`` command."""

import sys

from lmfs.cli import main

sys.exit(main())
