"""Multi-turn episodes: vLLM generation interleaved with environment steps, as one exact token sequence.

An episode's training row is built the way the engine saw it, never re-tokenised::

    prompt_ids = chat(system, user: task + first observation) + generation prompt
    response   = a_1  o_1  a_2  o_2 ... a_n          (a_k: the engine's own token ids for action k)
    target     = 1…1  0…0  1…1  0…0 ... 1…1          (only the agent's action tokens are targets)

``o_k`` are the template tokens that close the assistant turn, carry observation k as a user message and open
the next assistant turn (:class:`TurnFormat`); turn k+1 is generated from exactly ``prompt_ids + a_1 … o_k``,
so the log-probs the learner computes are over the same context the engine sampled from. The last
observation is not part of the row (nothing after it is trained).

Expert-prefix replay: an :class:`EpisodeStart` may carry ``forced`` actions that are played (tokenised as the
model would have written them, then closed with the turn's end) before the policy takes over — HPL's negative
groups and Monte-Carlo values restore a state this way. ``max_policy_actions`` stops an episode after that
many generated actions (HPL: "generate |G| actions"). Budgets: ``max_turns`` actions per episode, and a token
budget (the whole row must fit ``max_tokens``; an episode that would not is ended as ``token_budget``).

Failures: an environment that raises, hangs or dies ends its episode with status ``env_failure`` (counted;
the pool replaces the actor); the other episodes of the batch carry on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rollout.envs.base import Observation, StepResult, parse_action
from rollout.envs.pool import EnvFailure, EnvPool
from rollout.types import Completion, GenerationRequest, Prompt, Sample, SamplingParams

DEFAULT_SYSTEM = (
    "You are an agent in a text-based environment. Each turn, reply with exactly one command on a single "
    "line (for example: go north, take key, open door) and nothing else."
)
DEFAULT_FIRST_TURN = "{task}\n\n{observation}"


class TurnFormat:
    """Token segments of a multi-turn chat, computed once from the tokenizer's chat template.

    ``first(task, observation)`` renders the opening prompt; ``after_action(last_token, stopped, obs)`` is the
    segment between action k and action k+1: the rest of the assistant turn's closing text (minus the end
    token when the engine already generated it), the observation as a user message, and the generation
    prompt. Without a chat template a plain transcript is used (observations, then ``"> "`` before actions).
    """

    def __init__(
        self,
        tokenizer: Any,
        system_prompt: str | None = DEFAULT_SYSTEM,
        first_turn: str = DEFAULT_FIRST_TURN,
        use_chat_template: bool = True,
    ) -> None:
        self.tok = tokenizer
        self.system = system_prompt
        self.first_turn = first_turn
        self.chat = bool(use_chat_template and getattr(tokenizer, "chat_template", None))
        if self.chat:
            sys_msgs = [{"role": "system", "content": system_prompt}] if system_prompt else []
            base = [*sys_msgs, {"role": "user", "content": "U"}, {"role": "assistant", "content": "A"}]
            closed = tokenizer.apply_chat_template(base, tokenize=False)
            opened = tokenizer.apply_chat_template(base[:-1], tokenize=False, add_generation_prompt=True)
            nxt = tokenizer.apply_chat_template(
                [*base, {"role": "user", "content": "\x00OBS\x00"}],
                tokenize=False,
                add_generation_prompt=True,
            )
            if not (closed.startswith(opened + "A") and nxt.startswith(closed)):
                raise ValueError(
                    "the tokenizer's chat template does not render a conversation as a prefix of its "
                    "continuation; multi-turn rows cannot be built exactly with it (set use_chat_template: false)"
                )
            # Text after an assistant message's content (e.g. "<|im_end|>\n"), and the next user turn up to
            # the generation prompt, around the observation.
            self.assistant_close = closed[len(opened) + 1 :]
            self.obs_before, _, self.obs_after = nxt[len(closed) :].partition("\x00OBS\x00")

    def encode(self, text: str) -> list[int]:
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def first(self, task: str, observation: str) -> list[int]:
        user = self.first_turn.format(task=task, observation=observation)
        if self.chat:
            msgs = [{"role": "system", "content": self.system}] if self.system else []
            msgs.append({"role": "user", "content": user})
            return self.encode(self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
        prefix = f"{self.system}\n\n" if self.system else ""
        return self.encode(f"{prefix}{user}\n> ")

    def _close(self, last_token: int | None, stopped: bool) -> str:
        """What still closes the assistant turn after the generated tokens."""
        close = self.assistant_close if self.chat else ""
        if stopped and last_token is not None and close:
            end = self.tok.decode([last_token])
            if end and close.startswith(end):  # the engine generated the end-of-turn token itself
                return close[len(end) :]
        return close

    def after_action(self, last_token: int | None, stopped: bool, observation: str) -> list[int]:
        if self.chat:
            return self.encode(
                self._close(last_token, stopped) + self.obs_before + observation + self.obs_after
            )
        return self.encode(f"\n{observation}\n> ")

    def forced_action(self, action: str) -> list[int]:
        """Token ids of an action the agent did not generate (expert replay), as the model would end it."""
        ids = self.encode(action)
        eos = getattr(self.tok, "eos_token_id", None)
        if (
            self.chat
            and eos is not None
            and self.assistant_close.startswith(self.tok.decode([eos]) or "\x00")
        ):
            ids.append(int(eos))  # chat models end their turn with the end token: so does the replayed one
        return ids


@dataclass
class Turn:
    action: str  # the command sent to the environment (parsed from the reply)
    reply: str  # the reply text as generated (or the forced action)
    action_ids: list[int]
    logprobs: list[float]  # engine log-probs of action_ids (0.0 for forced actions)
    forced: bool  # replayed expert action, not sampled
    stopped: bool = True  # the action ended on the model's own end token (False: cut at the token budget)
    observation: str = ""
    reward: float = 0.0  # environment's normalised score after this action
    valid: bool | None = None
    obs_ids: list[int] = field(default_factory=list)  # the segment after this action (empty for the last)


@dataclass
class EpisodeStart:
    prompt: Prompt  # the task row: text + columns (env-specific keys, expert_actions, ...)
    forced: list[str] = field(default_factory=list)  # actions replayed before the policy acts
    max_policy_actions: int | None = None  # stop after this many generated actions (None: play to the end)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Episode:
    start: EpisodeStart
    prompt_ids: list[int] = field(default_factory=list)
    first_observation: str = ""
    turns: list[Turn] = field(default_factory=list)
    status: str = "running"  # done | max_turns | token_budget | policy_budget | env_failure
    failure: str | None = None
    won: bool = False

    @property
    def episode_return(self) -> float:
        return self.turns[-1].reward if self.turns else 0.0

    @property
    def response_ids(self) -> list[int]:
        out: list[int] = []
        for t in self.turns:
            out += t.action_ids + t.obs_ids
        return out

    @property
    def target_mask(self) -> list[int]:
        """1 on generated action tokens; 0 on forced actions and observation/template tokens."""
        out: list[int] = []
        for t in self.turns:
            out += [0 if t.forced else 1] * len(t.action_ids) + [0] * len(t.obs_ids)
        return out

    def action_mask(self, include_forced: bool = True) -> list[int]:
        """1 on every action's tokens (forced ones too, for behaviour cloning of expert replays)."""
        out: list[int] = []
        for t in self.turns:
            out += [1 if (include_forced or not t.forced) else 0] * len(t.action_ids) + [0] * len(t.obs_ids)
        return out

    def to_sample(self, group_id: str, **meta: Any) -> Sample:
        lp: list[float] = []
        for t in self.turns:
            lp += list(t.logprobs) + [0.0] * len(t.obs_ids)
        prompt = replace(self.start.prompt, columns={**self.start.prompt.columns, **self.outcome()})
        return Sample(
            prompt=prompt,
            prompt_ids=list(self.prompt_ids),
            response_ids=self.response_ids,
            logprobs=lp,
            finish_reason="stop" if self.status == "done" else "length",
            response_text="\n".join(f"> {t.action}" for t in self.turns),
            group_id=group_id,
            target_mask=self.target_mask,
            meta={"episode": self.record(), **self.start.meta, **meta},
        )

    def outcome(self) -> dict[str, Any]:
        """The episode's result as dataset-style columns (what reward plugins such as ``env_return`` read)."""
        return {
            "episode_return": self.episode_return,
            "episode_won": self.won,
            "episode_status": self.status,
            "episode_turns": len(self.turns),
            "episode_invalid_actions": sum(t.valid is False for t in self.turns if not t.forced),
        }

    def record(self) -> dict[str, Any]:
        """A JSON-able transcript for inspection (no token lists)."""
        return {
            "uid": self.start.prompt.uid,
            "status": self.status,
            "failure": self.failure,
            "return": self.episode_return,
            "won": self.won,
            "first_observation": self.first_observation,
            "turns": [
                {
                    "action": t.action,
                    "reply": t.reply,
                    "forced": t.forced,
                    "observation": t.observation,
                    "reward": t.reward,
                    "valid": t.valid,
                }
                for t in self.turns
            ],
            "tokens": len(self.prompt_ids) + len(self.response_ids),
        }


@dataclass
class EpisodeLimits:
    max_turns: int = 20  # actions per episode (forced ones included)
    max_action_tokens: int = 32  # tokens per generated action
    max_tokens: int = 2048  # the whole row: prompt + actions + observations


@dataclass(frozen=True)
class EpisodeSpec:
    """How a recipe plays its episodes — environment, chat turns, budgets, task files — so that an evaluation
    (launch/episodes_eval.py) plays the same game the same way. Every strategy that plays episodes exposes it as
    ``options.episode_spec(recipe)``."""

    env: str
    env_options: dict[str, Any]
    pool_size: int
    step_timeout_s: float
    limits: EpisodeLimits
    system_prompt: str | None
    first_turn: str
    use_chat_template: bool
    temperature: float  # the training rollouts' sampling temperature
    train_tasks: str | None  # the training task rows
    eval_tasks: str | None = None  # held-out task rows (None: test.jsonl beside ``train_tasks``)

    def turn_format(self, tokenizer: Any) -> TurnFormat:
        return TurnFormat(tokenizer, self.system_prompt, self.first_turn, self.use_chat_template)


def task_of(prompt: Prompt) -> dict[str, Any]:
    return {"uid": prompt.uid, **prompt.columns}


class EpisodeRunner:
    """Plays many episodes at once over a pool of env slots; one batched generate call per turn."""

    def __init__(self, pool: EnvPool, fmt: TurnFormat, limits: EpisodeLimits, params: SamplingParams) -> None:
        self.pool, self.fmt, self.limits, self.params = pool, fmt, limits, params

    def run(self, starts: Sequence[EpisodeStart], generator: Any) -> list[Episode]:
        episodes = [Episode(s) for s in starts]
        queue = list(range(len(episodes)))[::-1]
        active: dict[int, int] = {}  # slot -> episode index
        free = list(range(self.pool.size))[::-1]
        while queue or active:
            # Fill free slots with new episodes (one batched reset).
            new: list[tuple[int, int]] = []
            while free and queue:
                new.append((free.pop(), queue.pop()))
            if new:
                obs = self.pool.reset(
                    [s for s, _ in new], [task_of(episodes[i].start.prompt) for _, i in new]
                )
                for (slot, i), o in zip(new, obs, strict=True):
                    if self._begin(episodes[i], o):
                        active[slot] = i
                    else:
                        free.append(slot)
            if not active:
                continue
            # One action per active episode: forced (replay) or generated (batched).
            slots = list(active)
            acts: dict[int, Turn] = {}
            gen_slots = []
            for s in slots:
                ep = episodes[active[s]]
                if len(ep.turns) >= len(ep.start.forced):
                    gen_slots.append(s)
                else:
                    a = ep.start.forced[len(ep.turns)]
                    ids = self.fmt.forced_action(a)
                    acts[s] = Turn(a, a, ids, [0.0] * len(ids), True)
            if gen_slots:
                comps = self._generate([episodes[active[s]] for s in gen_slots], generator)
                for s, c in zip(gen_slots, comps, strict=True):
                    ids, lps = list(c.token_ids), list(c.logprobs)
                    acts[s] = Turn(parse_action(c.text), c.text, ids, lps, False, c.finish_reason == "stop")
            results = self.pool.step(slots, [acts[s].action for s in slots])
            for s, r in zip(slots, results, strict=True):
                if self._advance(episodes[active[s]], acts[s], r):
                    del active[s]
                    free.append(s)
        return episodes

    # ------------------------------------------------------------------ steps of one episode

    def _begin(self, ep: Episode, o: Observation | EnvFailure) -> bool:
        if isinstance(o, EnvFailure):
            ep.status, ep.failure = "env_failure", o.reason
            return False
        ep.first_observation = o.text
        ep.prompt_ids = self.fmt.first(ep.start.prompt.text, o.text)
        if len(ep.prompt_ids) + self.limits.max_action_tokens > self.limits.max_tokens:
            ep.status = "token_budget"
            return False
        return True

    def _context(self, ep: Episode) -> list[int]:
        return ep.prompt_ids + ep.response_ids

    def _generate(self, eps: list[Episode], generator: Any) -> list[Completion]:
        reqs = []
        for ep in eps:
            room = self.limits.max_tokens - len(ep.prompt_ids) - len(ep.response_ids)
            n_new = max(1, min(self.limits.max_action_tokens, room))
            reqs.append(GenerationRequest(self._context(ep), 1, replace(self.params, max_new_tokens=n_new)))
        return [comps[0] for comps in generator.generate(reqs)]

    def _advance(self, ep: Episode, turn: Turn, r: StepResult | EnvFailure) -> bool:
        """Record the action and its outcome; True when the episode has ended."""
        ep.turns.append(turn)
        if isinstance(r, EnvFailure):
            ep.status, ep.failure = "env_failure", r.reason
            return True
        turn.observation, turn.reward, turn.valid = r.observation, float(r.reward), r.info.get("valid")
        ep.won = bool(r.info.get("won", False)) or (r.done and r.reward >= 1.0)
        if r.done:
            ep.status = "done"
            return True
        if len(ep.turns) >= self.limits.max_turns:
            ep.status = "max_turns"
            return True
        n_policy = sum(not t.forced for t in ep.turns)
        cap = ep.start.max_policy_actions
        if cap is not None and len(ep.turns) >= len(ep.start.forced) and n_policy >= cap:
            ep.status = "policy_budget"
            return True
        last = turn.action_ids[-1] if turn.action_ids else None
        seg = self.fmt.after_action(last, turn.stopped, r.observation)
        used = len(ep.prompt_ids) + len(ep.response_ids) + len(seg)
        if used + self.limits.max_action_tokens > self.limits.max_tokens:
            ep.status = "token_budget"
            return True
        turn.obs_ids = seg
        return False


def episode_metrics(episodes: Sequence[Episode]) -> dict[str, float]:
    n = max(len(episodes), 1)
    played = [e for e in episodes if e.status != "env_failure"]
    m = max(len(played), 1)
    acts = [t for e in played for t in e.turns if not t.forced]
    return {
        "env/return_mean": sum(e.episode_return for e in played) / m,
        "env/success_rate": sum(e.won for e in played) / m,
        "env/turns_mean": sum(len(e.turns) for e in played) / m,
        "env/invalid_action_frac": sum(t.valid is False for t in acts) / max(len(acts), 1),
        "env/failures": float(sum(e.status == "env_failure" for e in episodes)),
        "env/truncated_frac": sum(e.status in ("max_turns", "token_budget") for e in episodes) / n,
        "env/tokens_mean": sum(len(e.prompt_ids) + len(e.response_ids) for e in played) / m,
    }


@dataclass
class TranscriptRow:
    """A transcript (text turns) tokenised as a replayed episode: the row and where each action sits."""

    prompt_ids: list[int]
    response_ids: list[int]
    spans: list[tuple[int, int]]  # response positions [a, b) of action k's tokens

    def action_mask(self, start: int = 0, end: int | None = None) -> list[int]:
        """1 on the tokens of actions ``start .. end-1`` (all actions by default), 0 elsewhere."""
        out = [0] * len(self.response_ids)
        for a, b in self.spans[start:end]:
            out[a:b] = [1] * (b - a)
        return out


def transcript_row(
    fmt: TurnFormat,
    task: str,
    first_observation: str,
    turns: Sequence[dict[str, str]],
    max_tokens: int | None = None,
) -> TranscriptRow:
    """Tokenise ``turns`` (``{"action", "observation"}``, the observation after each action) exactly as the
    :class:`EpisodeRunner` replays forced actions, so an offline row (BC, DPO) is the sequence the model
    sees when it plays that episode. The observation after the last action is not part of the row.

    ``max_tokens``: the row is cut after the last action that fits whole (fewer spans); callers check that
    the actions they score survived.
    """
    prompt = fmt.first(task, first_observation)
    resp: list[int] = []
    spans: list[tuple[int, int]] = []
    for k, t in enumerate(turns):
        ids = fmt.forced_action(t["action"])
        seg = fmt.after_action(ids[-1] if ids else None, True, t["observation"]) if k + 1 < len(turns) else []
        if max_tokens is not None and len(prompt) + len(resp) + len(ids) > max_tokens:
            break
        spans.append((len(resp), len(resp) + len(ids)))
        resp += ids
        if seg and max_tokens is not None and len(prompt) + len(resp) + len(seg) > max_tokens:
            break
        resp += seg
    return TranscriptRow(prompt, resp, spans)
