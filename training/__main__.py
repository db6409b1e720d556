"""python -m training: the `flipmatch` CLI."""

from training.cli import app

app()
