"""setuptools' entry point: the metadata is in setup.cfg; this adds one file.

``partypool-sighup.pth`` is written beside the packages.  Python runs its
line as it starts, before twistd has imported Twisted, so that a SIGHUP can
no longer end a starting server (see `partypool.sighup`).  The line imports
that module only if an argument mentions "partypool": other programs in the
same environment start as before.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HOOK_NAME = "partypool-sighup.pth"
HOOK_LINE = (
    'import sys; "partypool" in str(sys.orig_argv) and __import__("partypool.sighup")\n'
)


class BuildPyWithHook(build_py):
    """build_py, then the start-up hook at the top of the built tree."""

    def run(self) -> None:
        super().run()
        (Path(self.build_lib) / HOOK_NAME).write_text(HOOK_LINE, encoding="utf-8")


setup(cmdclass={"build_py": BuildPyWithHook})
