"""``python -m benchmarks WHICH [--size S] [--out F] ...``, as ``python -m audit bench``."""

import sys

from audit.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
