"""Small shared helpers."""
from __future__ import annotations

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success it is renamed over ``path`` (atomic on
    POSIX), on failure it is removed, so no half-written file is ever left at ``path``. The file
    gets the permissions of any file the process creates (0666 less the umask), not the private
    0600 of the temporary file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def current_umask() -> int:
    """The process umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def replace_marked_section(path, begin: str, end: str, section: str, missing: str = "") -> None:
    """Replace the text from ``begin`` to ``end`` in the markdown file ``path`` by ``section``
    (which carries the markers itself), keeping the rest of the file; where the markers are not
    there yet, append ``missing`` (a heading, say) and the section. Written atomically; a missing
    file is created."""
    text = open(path).read() if os.path.isfile(path) else "# Speed benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + missing + section + "\n"
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
