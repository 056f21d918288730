"""`python -m app.cli ...`, the same as `parley ...`."""

from app.cli.main import main

main()
