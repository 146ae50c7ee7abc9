"""Write sandbox for the reward worker process (Linux Landlock, no privileges needed).

``restrict_writes(allowed)`` lets this process (and its children) create, write, truncate, rename or delete files
only beneath the ``allowed`` folders (plus writing to existing devices such as /dev/null); reading stays
unrestricted. The reward worker calls it with a private scratch folder (``FORGE_REWARD_SCRATCH``), so a plugin
cannot write into the run's folder — checkpoints, metrics, logs — by accident or otherwise. Open file
descriptors keep working (the worker's log file is opened before).

Returns False (and changes nothing) where the kernel has no Landlock (before Linux 5.13, or disabled); the scorer
then logs that the plugins run unsandboxed.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # x86_64 and aarch64 alike
_PR_SET_NO_NEW_PRIVS = 38
_RULE_PATH_BENEATH = 1
_VERSION_FLAG = 1  # LANDLOCK_CREATE_RULESET_VERSION

# LANDLOCK_ACCESS_FS_* bits that modify the file system (ABI 1, then REFER in ABI 2, TRUNCATE in ABI 3).
_WRITE_FILE = 1 << 1
_ABI1_WRITES = _WRITE_FILE | sum(
    1 << b for b in range(4, 13)
)  # remove dir/file, make char/dir/reg/sock/fifo/block/sym
_REFER, _TRUNCATE = 1 << 13, 1 << 14


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0: none)."""
    libc = ctypes.CDLL(None, use_errno=True)
    v = libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_VERSION_FLAG))
    return max(int(v), 0)


def restrict_writes(allowed: Sequence[str]) -> bool:
    """Forbid file-system writes outside ``allowed`` (and /dev) for this process from now on; True if applied."""
    abi = landlock_abi()
    if abi < 1:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    handled = _ABI1_WRITES | (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0)
    attr = _RulesetAttr(handled)
    ruleset = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)), 0)
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        rules = [(p, handled) for p in allowed] + [("/dev", _WRITE_FILE | (_TRUNCATE if abi >= 3 else 0))]
        for path, access in rules:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneath(access, fd)
                if libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(rule), 0) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return True
