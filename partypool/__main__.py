"""``python -m partypool``: the ``partypool`` command (see `partypool.launcher`)."""

from partypool.launcher import main

raise SystemExit(main())
