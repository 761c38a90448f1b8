"""Plain-Python inference layer: prompt template, TGI client, tag parser, simulator.

Nothing in this package imports Django, so it can be used and tested on its own.
"""
