# tests/devtools tests the dev stack's own helpers (devtools/): plain Python, no Django fixtures.
