"""Test launcher: runs `python -m service` with the index-file writer patched to stop at a chosen point of a
save, so a test can SIGKILL the process there deterministically instead of racing a fast write.

FLIPMATCH_TEST_PAUSE_SAVE (read here only, never by the service):
  mid-index     half of the `.faiss` temporary file written, not yet renamed
  after-index   `.faiss` renamed into place, manifest not yet written
The Nth save of a `.faiss` file pauses (FLIPMATCH_TEST_PAUSE_SAVE_AT, default 1); it then writes the marker file
FLIPMATCH_TEST_PAUSE_MARKER and blocks that save thread until the process is killed.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from service.corpus import index as index_module
from service.corpus import index_files
from service.server import serve

POINT = os.environ.pop("FLIPMATCH_TEST_PAUSE_SAVE")
AT = int(os.environ.pop("FLIPMATCH_TEST_PAUSE_SAVE_AT", "1"))
MARKER = Path(os.environ.pop("FLIPMATCH_TEST_PAUSE_MARKER"))
_real_write = index_module.write_atomically
_saves = 0
_never = threading.Event()


def _pause() -> None:
    MARKER.write_text(str(os.getpid()))
    _never.wait()  # until SIGKILL


def paused_write(path: Path, data: bytes) -> None:
    global _saves
    if path.suffix == ".faiss":
        _saves += 1
        if _saves == AT and POINT == "mid-index":
            tmp = path.with_name(f".{path.name}.tmp")
            with tmp.open("wb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
                os.fsync(fh.fileno())
            _pause()
        _real_write(path, data)
        if _saves == AT and POINT == "after-index":
            _pause()
        return
    _real_write(path, data)


index_module.write_atomically = paused_write
index_files.write_atomically = paused_write

if __name__ == "__main__":
    serve()
