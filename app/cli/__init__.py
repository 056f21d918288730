"""The `parley` command: serve, train, eval and test (main.py); `python -m app.cli` runs it too."""
