"""An HF engine of which the first instance started (per marker folder) is slow: 1 s extra per request.

The marker folder is a module constant so that Ray actors, which do not see the test's environment, agree on
it; the test creates and removes it."""

from __future__ import annotations

import os
import time

from rollout.engines.hf_engine import HFEngine

MARKER_DIR = "/tmp/fr_slow_engine"
DELAY_S = 1.0


class FirstIsSlowHFEngine(HFEngine):
    def __init__(self, spec) -> None:
        super().__init__(spec)
        try:
            os.close(os.open(os.path.join(MARKER_DIR, "claimed"), os.O_CREAT | os.O_EXCL))
            self.delay = DELAY_S
        except FileExistsError:
            self.delay = 0.0

    def generate(self, requests, defaults):
        time.sleep(self.delay * len(requests))
        return super().generate(requests, defaults)
