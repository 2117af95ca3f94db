"""`comply serve`, `comply users ...` and `comply audit ...` commands (registered on the main app by assistant.cli)."""
