"""``python -m partypool.client``: the same program as ``partypool-client``."""

from partypool.client.main import main

raise SystemExit(main())
