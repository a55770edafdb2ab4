"""``python -m selectivity_eval`` is the ``selectivity-eval`` command."""

from selectivity_eval.core.cli.app import main

main()
