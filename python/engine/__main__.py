import sys

from engine.entrypoints.cli import main

# Worker processes (spawn start method) import this module again as "__mp_main__".
if __name__ == "__main__":
    sys.exit(main())
