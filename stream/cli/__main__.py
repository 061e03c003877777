"""`python -m stream.cli`: the same as the `twostream` command."""
import sys

from stream.cli import main

sys.exit(main())
