"""`python -m controller` is `gpufleet-controller`."""

import sys

from controller.cli import main

sys.exit(main())
