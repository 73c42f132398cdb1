"""``python -m gpunet.bench ...``: the same as ``gpunet bench ...``."""
import sys

from ..cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
