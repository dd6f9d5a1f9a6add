"""PyInstaller entry script of the frozen chat client (PartyPoolClient-v*).

Nothing here may import Twisted: ``partypool.client.main.main`` installs the
asyncio reactor first, and that only works before anything has imported
``twisted.internet.reactor``. The invite travels inside the executable and is
found by ``partypool.invite.embedded_invite``.
"""

import sys

if __name__ == "__main__":
    if sys.argv[1:] == ["--version"]:
        # Answered here so the smoke test in CI needs no server and no passkey.
        from partypool.invite import package_version

        print(f"PartyPoolClient {package_version()}")
        sys.exit(0)
    from dist_tools.console import run_keeping_console
    from partypool.client.main import main

    sys.exit(run_keeping_console(main))
