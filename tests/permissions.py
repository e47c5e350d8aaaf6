"""Running a command under which file permission bits apply, even when the tests run as root."""

from __future__ import annotations

import os
import shutil

import pytest


def without_file_permission_override() -> tuple:
    """Return a command prefix under which the permission bits of files apply, even for root.

    Skips the calling test when it runs as root and ``setpriv`` is not installed.
    """
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv, so a read-only folder cannot be made")
    # Root ignores permission bits through these two capabilities; without them chmod applies.
    return (setpriv, "--bounding-set", "-dac_override,-dac_read_search")


def make_read_only(folder) -> None:
    """Remove the write permission from `folder`, every folder and every file below it."""
    for root, folders, files in os.walk(folder):
        for name in files:
            os.chmod(os.path.join(root, name), 0o444)
        os.chmod(root, 0o555)
