"""A first run a person can read: third-party output goes to ``<output_dir>/logs/``, the console keeps ours.

With ``logging.verbose: false`` (the default; ``--verbose`` on the command line turns it on):

- every actor (rollout worker, learner rank) and the reward worker process point their file descriptors 1
  and 2 at ``logs/<role>.log`` as their first act (``redirect_output``), so vLLM, DeepSpeed, torch and C++
  warnings land there, not on the driver's console through Ray;
- in the driver, ``quiet_driver`` sends the Python loggers of Ray, vLLM, DeepSpeed, transformers, torch and
  Python's ``warnings`` to ``logs/driver.log`` only.

Errors still surface: a failing actor call raises in the driver with the remote traceback, and the log
files hold everything that was printed around it.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

THIRD_PARTY = (
    "ray",
    # ray.init resets the "ray" logger's handlers, then warns from this child (token auth): routed directly
    "ray._private.authentication",
    "vllm",
    "deepspeed",
    "transformers",
    "torch",
    "datasets",
    "urllib3",
    "filelock",
    "py.warnings",
)


def log_file(output_dir: str, role: str, verbose: bool) -> str | None:
    """``<output_dir>/logs/<role>.log`` (folder created), or None when verbose (output stays on the console)."""
    if verbose:
        return None
    folder = Path(output_dir) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"{role}.log")


def redirect_output(path: str | None) -> None:
    """Point this process's stdout and stderr (the file descriptors, so C/C++ output too) at ``path``."""
    if not path:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def quiet_driver(path: str | None) -> logging.Handler | None:
    """Route third-party Python logging and warnings of the driver to ``path``; returns the handler (None: no-op)."""
    global _ACTIVE
    if not path:
        return None
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    _ACTIVE = handler
    reattach()
    return handler


_ACTIVE: logging.Handler | None = None


def reattach() -> None:
    """(Re)route the third-party loggers to the active quiet handler, dropping their own console handlers (Ray's
    PlainRayHandler, vLLM's stream handler). ``ray.init`` resets Ray's logger, so init_ray calls this after it.
    No-op when the driver is not quiet."""
    if _ACTIVE is None:
        return
    for name in THIRD_PARTY:
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.addHandler(_ACTIVE)
        lg.propagate = False


def restore_driver(handler: logging.Handler | None) -> None:
    """Undo ``quiet_driver`` (tests and benches run several jobs in one process)."""
    global _ACTIVE
    if handler is None:
        return
    _ACTIVE = None
    for name in THIRD_PARTY:
        lg = logging.getLogger(name)
        lg.removeHandler(handler)
        lg.propagate = True
    logging.captureWarnings(False)
    handler.close()


class fd_redirect:
    """Point file descriptors 1 and 2 at ``path`` inside a ``with`` block and restore them after (in-process
    engines: vLLM's start-up prints from C++ and worker code that no Python logger controls). ``None``: no-op."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.saved: tuple[int, int] | None = None

    def __enter__(self) -> fd_redirect:
        if self.path:
            sys.stdout.flush()
            sys.stderr.flush()
            self.saved = (os.dup(1), os.dup(2))
            redirect_output(self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(self.saved[0], 1)
            os.dup2(self.saved[1], 2)
            os.close(self.saved[0])
            os.close(self.saved[1])
            self.saved = None
