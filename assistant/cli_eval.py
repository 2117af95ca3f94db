"""`comply eval ...` commands (registered on the main app by assistant.cli)."""
