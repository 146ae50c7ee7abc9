"""``env_return``: the final reward of a multi-turn episode, as the environment scored it.

Multi-turn strategies (rollout/strategies/multiturn_grpo.py) put each episode's outcome into its row's columns
(``episode_return``, ``episode_won``, ``episode_status``, ``episode_turns``, ``episode_invalid_actions``), so
the environment's reward flows through the same scorer as every other reward (weights, monitors, failures),
and a shaping plugin can combine it with the other columns.

An episode whose environment failed (raised, hung or died: ``episode_status == "env_failure"``) gets ``None``:
no reward signal, left out of the loss, rather than a 0 that would punish the policy for a crash that was
not its doing. It is counted in the rollout metrics (``env/failures``).
"""

from __future__ import annotations

from rewards.registry import register_reward


@register_reward("env_return")
def env_return(completions, episode_return, episode_status, **kwargs) -> list[float | None]:
    return [
        None if status == "env_failure" else float(r)
        for r, status in zip(episode_return, episode_status, strict=True)
    ]


@register_reward("env_won")
def env_won(completions, episode_won, episode_status, **kwargs) -> list[float | None]:
    """1.0 when the episode's goal was reached (a monitor: success rate beside the return)."""
    return [
        None if status == "env_failure" else float(bool(w))
        for w, status in zip(episode_won, episode_status, strict=True)
    ]
