"""Development tooling, kept out of the Django app: the image neither ships nor runs it.

- `devtools/stack.py`: the whole playground on one machine, supervised (`python -m
  devtools.stack`, what `make run` runs); the integration tests and the benchmark start it too.
- `devtools/processes.py`: ports, waiting for children, process groups, the embedded Redis.
- `devtools/pytest_plugin.py`: a real Redis for the test session (`-p devtools.pytest_plugin`).
- `devtools/local_model_wheel.py`: `make install-local-model`, with llama-cpp-python's compiled
  wheel cached per version and build flags.

Nothing here imports Django at the top: it runs before the environment is complete.
"""
