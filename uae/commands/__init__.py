"""The ``uae`` sub-commands, one module per command.

Each module has ``build_parser()`` (an ``argparse`` parser built from light modules only: the standard
library and :mod:`uae.cliargs`, so ``uae <command> --help`` answers without importing torch) and
``main(argv) -> int``, which parses first and imports the heavy implementation afterwards.
:mod:`uae.cli` dispatches to them (``COMMANDS``).
"""
