"""Plain-Python inference layer: prompt template, TGI and OpenAI-compatible clients, tag parser,
simulator.

Nothing in this package imports Django or the Django project (`inference/ruff.toml` enforces it),
so it can be used and tested on its own.
"""
