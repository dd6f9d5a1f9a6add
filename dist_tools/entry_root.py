"""PyInstaller entry script of the frozen root client (PartyPoolRoot-v*).

Like the chat client's entry, it imports nothing from Twisted itself, so the
root client's ``main`` chooses the reactor.
"""

import sys

if __name__ == "__main__":
    if sys.argv[1:] == ["--version"]:
        from partypool.invite import package_version

        print(f"PartyPoolRoot {package_version()}")
        sys.exit(0)
    from dist_tools.console import run_keeping_console
    from partypool.client.root import main

    sys.exit(run_keeping_console(main))
