"""The `comply` command: `main.py` holds the Typer app and registers each command group (one file each)."""
