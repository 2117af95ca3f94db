"""The assistant: retrieve, generate with a local model (+ LoRA adapter), cite and verify, serve."""
