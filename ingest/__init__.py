"""Ingestion: files -> pages -> clause-aligned chunks -> vectors + BM25, with a SQLite catalog as the source of truth."""
