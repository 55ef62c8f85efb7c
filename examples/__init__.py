"""Embedding examples (FastAPI, aiohttp.web); tested by ``tests/test_examples.py``."""
