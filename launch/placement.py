"""Where the actors go: one Ray placement group for the run's rollout workers and learners (``ray.placement``).

- ``disaggregated``: a bundle per rollout worker and a bundle per learner (rollout and training apart; on a GPU
  cluster they hold different GPUs).
- ``colocated``: learner j and rollout worker j share bundle j (needs workers ≤ learners); the bundle holds the
  sum of both actors' CPUs and GPUs (on GPU give each a fraction of one, e.g. 0.5 and 0.5). With
  ``rollout.sleep_when_idle`` vLLM sleeps while the learners train (weights to host memory, KV cache dropped)
  and wakes at the weight sync; vLLM's sleep mode is GPU-only, so on CPU colocation only packs the two actors
  onto the same node (and the engine refuses the option).
- ``none``: bare resource counts, Ray places each actor where it fits (the behaviour before placement groups).

The group is reserved before any actor starts and must be ready within ``ready_timeout_s``: a request the
cluster cannot meet fails at once with the numbers (asked vs available per node), never a silent wait. The
learners' rendezvous address is taken on learner rank 0's own bundle (trainer/group.py), so it is right on
any number of nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Placement:
    """The reserved group and which bundle each actor takes (``None`` group: bare resource counts)."""

    group: Any  # ray.util.placement_group.PlacementGroup | None
    rollout_bundles: list[int]
    learner_bundles: list[int]
    bundles: list[dict[str, float]]

    def options(self, role: str, index: int) -> dict[str, Any]:
        """Ray ``.options(...)`` that pin actor ``index`` of ``role`` (rollout | learner) to its bundle."""
        if self.group is None:
            return {}
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        bundle = (self.rollout_bundles if role == "rollout" else self.learner_bundles)[index]
        return {
            "scheduling_strategy": PlacementGroupSchedulingStrategy(
                self.group, placement_group_bundle_index=bundle, placement_group_capture_child_tasks=True
            )
        }

    def node_of(self, role: str, index: int) -> str | None:
        """The node id that holds actor ``index``'s bundle (None without a group)."""
        if self.group is None:
            return None
        from ray.util.placement_group import placement_group_table

        bundle = (self.rollout_bundles if role == "rollout" else self.learner_bundles)[index]
        return placement_group_table(self.group)["bundles_to_node_id"][bundle]

    def remove(self) -> None:
        if self.group is not None:
            import contextlib

            from ray.util import remove_placement_group

            with contextlib.suppress(Exception):
                remove_placement_group(self.group)
            self.group = None


def plan_bundles(
    mode: str,
    workers: int,
    worker_res: tuple[float, float],
    learners: int,
    learner_res: tuple[float, float],
) -> tuple[list[dict[str, float]], list[int], list[int]]:
    """(bundles, rollout worker → bundle, learner → bundle) for ``mode``; resources are (CPUs, GPUs) per actor.
    Pure logic (no Ray)."""

    def bundle(cpu: float, gpu: float) -> dict[str, float]:
        return {"CPU": float(cpu)} | ({"GPU": float(gpu)} if gpu else {})

    if mode == "disaggregated":
        bundles = [bundle(*worker_res) for _ in range(workers)] + [
            bundle(*learner_res) for _ in range(learners)
        ]
        return bundles, list(range(workers)), [workers + j for j in range(learners)]
    if mode == "colocated":
        if workers > learners:
            raise ValueError(
                f"colocated placement puts rollout worker j beside learner j: {workers} workers need at least as "
                f"many learners (have {learners})"
            )
        bundles = [
            bundle(
                learner_res[0] + (worker_res[0] if j < workers else 0.0),
                learner_res[1] + (worker_res[1] if j < workers else 0.0),
            )
            for j in range(learners)
        ]
        return bundles, list(range(workers)), list(range(learners))
    raise ValueError(f"unknown placement mode {mode!r}: use disaggregated, colocated or none")


def describe_cluster() -> str:
    """Live nodes' CPUs/GPUs, for error messages."""
    import ray

    parts = []
    for n in ray.nodes():
        if n.get("Alive"):
            r = n.get("Resources", {})
            gpu = f" + {r['GPU']:g} GPU" if r.get("GPU") else ""
            parts.append(f"{n.get('NodeManagerAddress', '?')}: {r.get('CPU', 0):g} CPU{gpu}")
    return "; ".join(parts) or "no live nodes"


def reserve(
    mode: str,
    strategy: str,
    workers: int,
    worker_res: tuple[float, float],
    learners: int,
    learner_res: tuple[float, float],
    ready_timeout_s: float,
) -> Placement:
    """Reserve the run's placement group, or fail with asked vs available when it cannot be placed in time."""
    if mode == "none":
        return Placement(None, [], [], [])
    import ray
    from ray.util.placement_group import placement_group

    from launch.ray_utils import ClusterTooSmall

    bundles, rb, lb = plan_bundles(mode, workers, worker_res, learners, learner_res)
    pg = placement_group(bundles, strategy=strategy)
    ready, _ = ray.wait([pg.ready()], timeout=ready_timeout_s)
    if not ready:
        placement = Placement(pg, rb, lb, bundles)
        placement.remove()
        asked = ", ".join(f"{'+'.join(f'{v:g} {k}' for k, v in b.items())}" for b in bundles)
        raise ClusterTooSmall(
            f"ray.placement: the {mode} placement group ({strategy}) of {len(bundles)} bundles [{asked}] could not "
            f"be placed within {ready_timeout_s:g} s; the cluster has {describe_cluster()}. Add nodes or logical "
            "CPUs (`ray start --num-cpus N`), lower the thread/worker/learner counts, or use a looser "
            "ray.placement.strategy (PACK/SPREAD instead of STRICT_*)"
        )
    return Placement(pg, rb, lb, bundles)


def actor_node(actor: Any) -> str:
    """The node id an actor runs on."""
    import ray

    return ray.get(actor.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()))


def record(placement: Placement, workers: list, learners: list, path: str) -> dict[str, Any]:
    """Where every actor runs vs where its bundle is: written to ``path`` (JSON) and returned. An actor that is
    not on its bundle's node is an error (it would mean the group did not pin it)."""
    import json

    out: dict[str, Any] = {"bundles": placement.bundles, "actors": []}
    for role, actors in (("rollout", workers), ("learner", learners)):
        for i, a in enumerate(actors):
            node, want = actor_node(a), placement.node_of(role, i)
            if want is not None and node != want:
                raise RuntimeError(f"{role} {i} runs on node {node}, its bundle is on {want}")
            bundle = placement.rollout_bundles if role == "rollout" else placement.learner_bundles
            out["actors"].append(
                {
                    "role": role,
                    "index": i,
                    "node": node,
                    "bundle": bundle[i] if bundle else None,
                    "bundle_node": want,
                }
            )
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    return out
