"""`comply finetune ...` and `comply adapters ...` commands (registered on the main app by assistant.cli)."""
