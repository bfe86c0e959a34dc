"""`python -m phasewise`: the `phasewise` command line (apps/cli.py main), as the installed script runs it."""

from phasewise.apps.cli import main

if __name__ == "__main__":
    main()
