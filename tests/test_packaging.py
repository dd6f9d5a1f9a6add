"""The wheel, installed into a fresh venv, gives twistd its partypool plugin.

twistd only finds plugins in twisted/plugins directories; setup.cfg maps our
twisted_plugins/ there.  This breaks silently when packaging changes, so it
is tested on a real install, as an operator would do it.
"""

import subprocess
import sys
import venv
import zipfile

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_wheel_installs_the_twistd_plugin(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--outdir",
            str(tmp_path / "wheel"),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    [wheel] = (tmp_path / "wheel").glob("partypool-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/partypool_plugin.py" in names
    assert "twisted/plugins/__init__.py" not in names  # would shadow Twisted's own
    assert "partypool/room/schema/001-initial.sql" in names
    assert "partypool/room/schema/003-request-limit.sql" in names
    # setup.py's start-up hook, beside the packages (see partypool.sighup).
    hook = zipfile.ZipFile(wheel).read("partypool-sighup.pth").decode()
    assert hook.startswith("import sys;") and "partypool.sighup" in hook
    for page in ("index.html", "app.js", "style.css", "icon.svg"):
        assert f"partypool/doors/web_static/{page}" in names  # the web door's page

    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True)
    # Without the server extra (PyICU) the server says what to install.
    bare = subprocess.run(
        [tmp_path / "venv" / "bin" / "twistd", "partypool", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert bare.returncode != 0
    assert "pip install 'partypool[server]'" in bare.stdout + bare.stderr
    subprocess.run(
        [python, "-m", "pip", "install", "-q", f"{wheel}[server]"], check=True
    )
    help_text = subprocess.run(
        [tmp_path / "venv" / "bin" / "twistd", "--help"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    assert "partypool" in help_text
    options = subprocess.run(
        [tmp_path / "venv" / "bin" / "twistd", "partypool", "--help"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    assert "--passkey-file" in options
    # The operator's command finds the same plugin in a real install.
    serve_help = subprocess.run(
        [tmp_path / "venv" / "bin" / "partypool", "serve", "--help"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    assert serve_help.startswith("Usage: partypool serve [options]")
    assert "--passkey-file" in serve_help
    assert "--web-origin" in options
