"""The browser app (Gradio): `main.py` builds and launches it; one file per tab or concern."""
