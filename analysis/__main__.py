"""python -m analysis DIR: the same as `scaling analyze DIR`."""

import sys

from scaling.__main__ import run

run(["analyze", *sys.argv[1:]])
