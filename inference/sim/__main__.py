"""`python -m inference.sim`: serve the simulator (see `inference.sim.cli` for the flags)."""

from .cli import main

if __name__ == "__main__":
    main()
