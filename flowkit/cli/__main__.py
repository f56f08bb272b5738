"""`python -m flowkit.cli`: the same as the `flowkit` console script."""

from flowkit.cli import main

main()
