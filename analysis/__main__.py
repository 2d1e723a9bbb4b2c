"""python -m analysis DIR: the same as `scaling analyze DIR`."""

import sys

from scaling.cli import main

sys.exit(main(["analyze", *sys.argv[1:]]))
