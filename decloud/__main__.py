"""``python -m decloud <command>`` is the same as ``decloud <command>``."""

import sys

from decloud.cli import main

sys.exit(main())
