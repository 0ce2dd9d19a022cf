"""``python -m sdcomplex`` runs the command line."""

from sdcomplex.cli import console_main

console_main()
