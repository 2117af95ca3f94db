"""The REST API served beside the browser app: `main.py` (routes, tokens, limits), `chat.py` (OpenAI-compatible
chat completions), `docs.py` (OpenAPI at /api/docs)."""
