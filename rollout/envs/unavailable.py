"""Environments that cannot run on this project's machines (no network but PyPI, npm and Debian).

Each adapter is registered like a real one, so a recipe naming it fails at env construction with one line
saying what is missing and how to get it on a connected machine, instead of an ImportError deep in an actor.

- ALFWorld: ``pip install alfworld`` works from PyPI (0.4.2, pulls ``textworld[pddl]``), but every game is a
  ``game.tw-pddl`` + ``traj_data.json`` pair from a GitHub release archive that ``alfworld-download`` fetches;
  ../shared/data/llm/alfworld has only the game list (see its PROVENANCE.md).
- WebShop: the PyPI package ``webshop`` 0.1.0 is a stub (its ``app.py`` imports ``web_agent_site``, which it
  does not ship); the simulator is the princeton-nlp/WebShop repository, and it needs the product catalogue
  (items_shuffle.json, items_ins_v2.json) from Google Drive and a pyserini search index built from it;
  ../shared/data/llm/webshop has only the goal texts and ETO's indices.
"""

from __future__ import annotations

from typing import Any

from rollout.envs.base import EnvError, Observation, StepResult


class _Unavailable:
    message = ""

    def __init__(self, **options: Any) -> None:
        raise EnvError(self.message)

    # Never reached (the constructor raises); present so the class satisfies the Environment protocol.
    def reset(self, task: dict[str, Any]) -> Observation:
        raise EnvError(self.message)

    def step(self, action: str) -> StepResult:
        raise EnvError(self.message)

    def close(self) -> None:
        return None


class AlfWorldEnv(_Unavailable):
    message = (
        "alfworld is unavailable offline: its game files (json_2.1.1 *.tw-pddl, traj_data.json) are a GitHub "
        "release download; on a connected machine: pip install 'alfworld==0.4.2' && alfworld-download "
        "(sets up $ALFWORLD_DATA, default ~/.cache/alfworld), then copy that folder here"
    )


class WebShopEnv(_Unavailable):
    message = (
        "webshop is unavailable offline: the PyPI 'webshop' package is a stub without the simulator "
        "(web_agent_site), and the product catalogue and search index are Google Drive downloads; on a "
        "connected machine: git clone princeton-nlp/WebShop && ./setup.sh -d all (downloads the data, "
        "builds the pyserini index; needs Java), then copy the repository and its data here"
    )
