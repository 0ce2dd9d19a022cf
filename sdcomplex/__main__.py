"""``python -m sdcomplex`` runs the command line."""

import sys

from sdcomplex.cli import main

sys.exit(main())
