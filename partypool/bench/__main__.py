"""``python -m partypool.bench``: see `partypool.bench.run`."""

import sys

from partypool.bench.run import main

sys.exit(main())
