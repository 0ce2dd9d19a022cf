"""No test writes decoded data to the user's cache: the session caches them in its own folder."""

import os
import subprocess
import sys
from pathlib import Path

from sdcomplex.data import cache_root


def test_the_session_caches_decoded_data_in_its_own_folder():
    session = Path(os.environ["SDCOMPLEX_TEST_SESSION"])
    assert cache_root() == session / "cache"
    assert not cache_root().resolve().is_relative_to(Path.home().resolve())
    # so do the command-line subprocesses the tests start
    code = "from sdcomplex.data import cache_root; print(cache_root())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == session / "cache"
