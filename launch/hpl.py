"""The HPL pipeline (METHODS.md §4) as resumable stages over one recipe, and the arms it is compared with.

    python -m launch.hpl RECIPE [--work DIR] [--stages expert,bc,traj,step,group,train,eval]
        [--arms sft,eto,hpl] [--segmentations fixed_length,...] [--engine vllm|hf] [--force] [-o KEY=VALUE ...]

Each stage writes its dataset under ``WORK/data`` and the next one reads it; a stage whose output exists is
skipped (``--force`` redoes it), so an interrupted pipeline continues where it stopped. ``WORK`` defaults to
the recipe's ``output_dir``. The recipe is an ``hpl`` strategy recipe (recipes/hpl_textworld_tiny_cpu.yaml):
its ``strategy.options.build`` says how the data is made, the rest how each arm trains.

1. ``expert``: replay every task's expert actions in the environment (rollout/multiturn.py, forced actions)
   → ``data/expert.jsonl`` (transcripts) and ``data/units_bc.jsonl``.
2. ``bc``: behaviour cloning on the expert transcripts (``launch.train``, ``build.bc_steps`` steps, BC term
   only) → ``bc/`` (its last checkpoint is π_ref for everything after).
3. ``traj``: π_ref plays each task ``build.traj_samples`` times; (expert, π_ref) trajectory pairs where the
   expert's final reward is higher by > ``traj_min_gap`` → ``data/traj.jsonl``.
4. ``step``: at each expert step t, π_ref proposes an action after the expert prefix; the step value of it
   and of the expert's action is the mean final reward of ``step_mc`` π_ref completions (the Monte-Carlo
   service: :meth:`Agent.values`); pairs with gap > ``step_min_gap`` → ``data/step.jsonl``.
5. ``group``: segment each expert trajectory (``build.segmentation``: fixed_length / fixed_count / entropy /
   judge), sample ``negative_samples`` π_ref groups of the same length after the expert prefix (T =
   ``build.temperature``), keep up to ``negatives`` distinct ones, value every group by ``group_mc``
   completions, keep pairs with r̂_w > r̂_l + ``group_min_gap`` and r̂_w ≥ ``group_min_value``, bucketed by
   length × ΔR → ``data/group_<segmentation>.jsonl``.
6. ``train``: per arm, the units it uses → ``data/units_<arm>.jsonl`` and a ``launch.train`` run from π_ref
   with the recipe's steps, batch and curriculum → ``<arm>/``. Arms: ``sft`` (BC continued: BC term only),
   ``eto`` (BC + trajectory DPO, ETO-style), ``hpl-<segmentation>`` (BC + trajectory + step + group DPO).
7. ``eval``: π_ref and every arm play each held-out task once, greedily → ``eval/<arm>.json`` (success rate,
   mean final reward, per-episode transcripts, the resolved settings, git commit, package versions).

Generation runs in this process (rollout/engines, vLLM by default) like ``launch.eval``; environments run
in a local pool (``build.pool: local``) or Ray actors (``ray``). Training runs are ``launch.train``
subprocesses, so every arm goes through the real learners (DeepSpeed) exactly as a recipe run does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from launch.episodes_eval import EvalError, evaluate_episodes, load_tasks
from rollout.hpl import (
    distinct_negatives,
    group_pair,
    judge_prompt,
    mean,
    normalize_action,
    read_jsonl,
    segment,
    step_pair,
    trajectory_pair,
    turns_of,
    unit,
)

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("expert", "bc", "traj", "step", "group", "train", "eval")
KINDS_OF_ARM = {"sft": ("bc",), "eto": ("bc", "traj"), "hpl": ("bc", "traj", "step", "group")}


class HPLError(ValueError):
    pass


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    """Atomic: a stage's output appears only once it is complete (an interrupted stage reruns)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


class Agent:
    """π (one model in an in-process engine) playing episodes over an env pool: play, replay, MC values."""

    def __init__(self, pipe: Pipeline, model_path: str) -> None:
        from launch.components import ENGINES, import_object
        from launch.quiet import fd_redirect
        from rollout.engines.base import EngineSpec
        from rollout.types import SamplingParams
        from rollout.worker import pin_threads

        cfg, b = pipe.cfg, pipe.build
        pin_threads(cfg.rollout.threads_per_worker)
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        spec = EngineSpec(
            model_path,
            cfg.model.dtype,
            pipe.max_tokens,
            cfg.rollout.kv_cache_gb,
            cfg.rollout.enforce_eager,
            cfg.seed,
            cfg.rollout.threads_per_worker,
        )
        with fd_redirect(pipe.log):  # vLLM's start-up chatter goes to WORK/logs/engine.log
            self.engine = import_object(ENGINES[pipe.engine])(spec)
        self.limits = pipe.spec.limits
        self.sampled = SamplingParams(
            b.max_action_tokens, b.temperature, cfg.rollout.top_p, cfg.rollout.top_k
        )
        self.greedy = SamplingParams(b.max_action_tokens, 0.0)
        self.pipe = pipe

    def generate(self, requests: list[Any]) -> list[Any]:
        from launch.quiet import fd_redirect

        with fd_redirect(self.pipe.log):
            return self.engine.generate(requests, self.sampled)

    def play(self, starts: list[Any], greedy: bool = False, what: str = "episodes") -> list[Any]:
        from rollout.multiturn import EpisodeRunner

        runner = EpisodeRunner(
            self.pipe.pool(), self.pipe.fmt, self.limits, self.greedy if greedy else self.sampled
        )
        t0 = time.perf_counter()
        print(f"[hpl]   {what}: {len(starts)} episodes ...", flush=True)
        eps = runner.run(starts, self)
        print(f"[hpl]   {what}: done in {time.perf_counter() - t0:.0f} s", flush=True)
        return eps

    def values(self, prompts: list[Any], prefixes: list[list[str]], m: int) -> list[float]:
        """Monte-Carlo value of each (task, action prefix): mean final reward of ``m`` π completions after
        replaying the prefix (failed episodes are left out of the mean; none left: NaN)."""
        from rollout.multiturn import EpisodeStart

        starts = [EpisodeStart(p, forced=list(pre)) for p, pre in zip(prompts, prefixes) for _ in range(m)]
        eps = self.play(starts, what=f"Monte-Carlo values ({len(prompts)} states x {m})")
        out = []
        for i in range(len(prompts)):
            ok = [e.episode_return for e in eps[i * m : (i + 1) * m] if e.status != "env_failure"]
            out.append(mean(ok))
        return out


class Pipeline:
    def __init__(
        self,
        recipe: str,
        work: str | None,
        overrides: list[str],
        engine: str | None,
        force: bool,
        verbose: bool = False,
    ) -> None:
        from launch.config import component_options, load_recipe
        from launch.setup import resolve_dtype
        from rollout.strategies.hpl import HPLOptions

        self.recipe, self.overrides, self.force = recipe, list(overrides), force
        # The recipe's data.source is the units file this pipeline writes: validate without it (each training
        # stage names its own units file).
        self.cfg = load_recipe(recipe, [*overrides, "data.source=arithmetic"])
        if self.cfg.strategy.name != "hpl":
            raise HPLError(
                f"{recipe}: strategy.name is {self.cfg.strategy.name!r}; the HPL pipeline needs 'hpl'"
            )
        resolve_dtype(self.cfg)
        self.opts: HPLOptions = component_options(
            HPLOptions, self.cfg.strategy.options, "strategy.options", recipe
        )
        from rollout.envs.base import absolute_paths

        b = self.opts.build
        env_options = absolute_paths(b.env_options)
        self.build = replace(b, env_options=env_options)
        self.work = Path(work or self.cfg.output_dir).resolve()
        self.engine = engine or self.cfg.rollout.engine
        self.max_tokens = self.cfg.rollout.max_model_len
        from transformers import AutoTokenizer

        from launch.prepare_model import resolve_model_path

        self.base_model = resolve_model_path(self.cfg.model.path, self.cfg.model.cache_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(self.base_model)
        o = self.opts
        self.spec = o.episode_spec(self.cfg)
        self.fmt = self.spec.turn_format(self.tokenizer)
        self._pool: Any = None
        self._agents: dict[str, Agent] = {}
        from launch.quiet import log_file, quiet_driver

        self.log = log_file(str(self.work), "engine", verbose)
        quiet_driver(self.log)

    # ------------------------------------------------------------------ plumbing

    def path(self, name: str) -> Path:
        return self.work / "data" / name

    def pool(self) -> Any:
        if self._pool is None:
            from rollout.envs.pool import LocalEnvPool, RayEnvPool

            b = self.build
            if b.pool == "ray":
                self._pool = RayEnvPool(b.env, b.env_options, b.pool_size, b.step_timeout_s)
            else:
                self._pool = LocalEnvPool(b.env, b.env_options, b.pool_size, b.step_timeout_s)
        return self._pool

    def agent(self, model_path: str) -> Agent:
        if model_path not in self._agents:
            for a in self._agents.values():  # one engine at a time (memory)
                del a.engine
            self._agents = {model_path: Agent(self, model_path)}
        return self._agents[model_path]

    def done(self, out: Path) -> bool:
        if out.exists() and not self.force:
            print(f"[hpl] {out.relative_to(self.work)} exists: skipped (--force redoes it)", flush=True)
            return True
        return False

    def tasks(self) -> list[Any]:
        return load_tasks(self.build.tasks, self.build.max_tasks)

    def pair_tasks(self) -> list[Any]:
        """The tasks the pair stages play (``build.pair_tasks``: the first N), each with its expert record."""
        experts = self.experts()
        tasks = [p for p in self.tasks() if p.uid in experts]
        return tasks[: self.build.pair_tasks] if self.build.pair_tasks else tasks

    def ref_model(self) -> str:
        return self.model_of(self.work / "bc")

    def model_of(self, run: Path) -> str:
        from launch.eval import _step_dir

        step = _step_dir(run)
        if step is None:
            raise HPLError(f"{run}: no checkpoint yet (run its training stage first)")
        return str(step / "model")

    def experts(self) -> dict[str, dict[str, Any]]:
        f = self.path("expert.jsonl")
        if not f.is_file():
            raise HPLError(f"{f} not found: run the expert stage first")
        return {r["uid"]: r for r in read_jsonl(f)}

    # ------------------------------------------------------------------ stages

    def stage_expert(self) -> None:
        from rollout.multiturn import EpisodeLimits, EpisodeRunner, EpisodeStart
        from rollout.types import SamplingParams

        out = self.path("expert.jsonl")
        if self.done(out):
            return
        tasks = self.tasks()
        for p in tasks:
            if not p.columns.get("expert_actions"):
                raise HPLError(f"{self.build.tasks}: task {p.uid!r} has no expert_actions")
        limits = EpisodeLimits(max(len(p.columns["expert_actions"]) for p in tasks), 1, 1 << 30)
        runner = EpisodeRunner(self.pool(), self.fmt, limits, SamplingParams(1, 0.0))
        eps = runner.run(
            [EpisodeStart(p, forced=list(p.columns["expert_actions"]), max_policy_actions=0) for p in tasks],
            None,
        )
        recs = [ep.record() | {"text": p.text} for ep, p in zip(eps, tasks)]
        good = [r for r in recs if r["status"] != "env_failure" and r["turns"]]
        print(
            f"[hpl] expert: {len(tasks)} tasks, {sum(r['won'] for r in recs)} won by their expert actions, "
            f"{len(recs) - len(good)} failed (left out)",
            flush=True,
        )
        units = [unit(f"{r['uid']}-bc", "bc", r["text"], r["first_observation"], turns_of(r)) for r in good]
        _write_jsonl(self.path("units_bc.jsonl"), units)
        _write_jsonl(out, good)

    def _train(
        self,
        name: str,
        data: Path,
        weights: dict[str, float],
        model: str | None,
        steps: int | None,
        extra: list[str] | None = None,
    ) -> None:
        run = self.work / name
        if (run / "checkpoints" / "latest").is_file() and not self.force:
            print(f"[hpl] {name}/ has a final checkpoint: skipped (--force redoes it)", flush=True)
            return
        over = [
            f"data.source={data}",
            "data.prompt_field=text",
            "data.answer_field=null",
            f"output_dir={run}",
            "resume=false",
            *[f"strategy.options.weights.{k}={weights.get(k, 0.0)}" for k in KINDS_OF_ARM["hpl"]],
        ]
        if model is not None:
            over.append(f"model.path={model}")
        if steps is not None:
            over.append(f"total_steps={steps}")
        over += extra or []
        cmd = [sys.executable, "-m", "launch.train", str(self.recipe), *self.overrides, *over]
        print(f"[hpl] train {name}: {sum(1 for _ in data.open())} units", flush=True)
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT)
        if r.returncode != 0:
            raise HPLError(f"training {name} failed (exit {r.returncode}): {' '.join(cmd)}")
        print(f"[hpl] train {name}: done in {time.perf_counter() - t0:.0f} s", flush=True)

    def stage_bc(self) -> None:
        lr = [] if self.build.bc_lr is None else [f"trainer.lr={self.build.bc_lr}"]
        self._train("bc", self.path("units_bc.jsonl"), {"bc": 1.0}, None, self.build.bc_steps, lr)

    def stage_traj(self) -> None:
        from rollout.multiturn import EpisodeStart

        out = self.path("traj.jsonl")
        if self.done(out):
            return
        experts, b = self.experts(), self.build
        tasks = self.pair_tasks()
        eps = self.agent(self.ref_model()).play(
            [EpisodeStart(p) for p in tasks for _ in range(b.traj_samples)], what="π_ref trajectories"
        )
        units, played = [], []
        for i, ep in enumerate(eps):
            p, e = tasks[i // b.traj_samples], experts[tasks[i // b.traj_samples].uid]
            rec = ep.record()
            played.append(rec)
            if ep.status == "env_failure" or not rec["turns"]:
                continue
            if trajectory_pair(e["return"], rec["return"], b.traj_min_gap):
                units.append(
                    unit(
                        f"{p.uid}-t{i % b.traj_samples}",
                        "traj",
                        p.text,
                        e["first_observation"],
                        turns_of(e),
                        turns_of(rec),
                        None,
                        e["return"],
                        rec["return"],
                    )
                )
        rets = [r["return"] for r in played]
        print(
            f"[hpl] traj: π_ref return {mean(rets):.3f} over {len(rets)} episodes; {len(units)} pairs",
            flush=True,
        )
        _write_jsonl(self.path("traj_episodes.jsonl"), played)
        _write_jsonl(out, units)

    def stage_step(self) -> None:
        from rollout.multiturn import EpisodeStart

        out = self.path("step.jsonl")
        if self.done(out):
            return
        experts, b = self.experts(), self.build
        tasks = self.pair_tasks()
        agent = self.agent(self.ref_model())
        where = [(p, t) for p in tasks for t in range(len(experts[p.uid]["turns"]))]
        acts = [[x["action"] for x in experts[p.uid]["turns"]] for p, _ in where]
        eps = agent.play(
            [EpisodeStart(p, forced=a[:t], max_policy_actions=1) for (p, t), a in zip(where, acts)],
            what="alternative actions after expert prefixes",
        )
        cands = []
        for (p, t), a, ep in zip(where, acts, eps):
            pol = [x for x in ep.turns if not x.forced]
            if (
                ep.status != "env_failure"
                and pol
                and normalize_action(pol[0].action) != normalize_action(a[t])
            ):
                cands.append((p, t, a, ep))
        prompts = [c[0] for c in cands] * 2
        prefixes = [a[: t + 1] for _, t, a, _ in cands] + [
            [*a[:t], _policy_turns(ep)[0].action] for _, t, a, ep in cands
        ]
        vals = agent.values(prompts, prefixes, b.step_mc)
        units = []
        for i, (p, t, _, ep) in enumerate(cands):
            v_exp, v_alt = vals[i], vals[len(cands) + i]
            e = experts[p.uid]
            if step_pair(v_exp, v_alt, b.step_min_gap):
                units.append(
                    unit(
                        f"{p.uid}-s{t}",
                        "step",
                        p.text,
                        e["first_observation"],
                        turns_of(e, t + 1),
                        turns_of(ep.record(), t + 1),
                        (t, t + 1),
                        v_exp,
                        v_alt,
                    )
                )
        print(
            f"[hpl] step: {len(where)} expert steps, {len(cands)} distinct alternatives, {len(units)} pairs",
            flush=True,
        )
        _write_jsonl(out, units)

    def _segments(self, recs: list[dict[str, Any]]) -> tuple[list[list[tuple[int, int]]], dict[str, float]]:
        b = self.build
        n = [len(r["turns"]) for r in recs]
        if b.segmentation == "entropy":
            ents = action_entropies(self.ref_model(), self.fmt, recs, self.max_tokens)
            return [
                segment("entropy", k, entropies=e, threshold=b.entropy_threshold) for k, e in zip(n, ents)
            ], {}
        if b.segmentation == "judge":
            texts = self._judge([r["text"] for r in recs], [[t["action"] for t in r["turns"]] for r in recs])
            out, fallback = [], 0
            for k, text in zip(n, texts):
                try:
                    out.append(segment("judge", k, judge_text=text))
                except ValueError:
                    fallback += 1  # an unusable reply: fixed-length groups instead, counted
                    out.append(segment("fixed_length", k, k=b.segment_k))
            print(
                f"[hpl] judge: {fallback}/{len(recs)} replies unusable, fixed-length groups used", flush=True
            )
            return out, {"judge_fallback": fallback}
        return [segment(b.segmentation, k, k=b.segment_k, count=b.segment_n) for k in n], {}

    def _judge(self, tasks: list[str], actions: list[list[str]]) -> list[str]:
        """The judge role (``aux_models.judge``; ``policy`` = π_ref) segments each expert trajectory."""
        from launch.prepare_model import resolve_model_path
        from rollout.types import GenerationRequest, SamplingParams

        if "judge" not in self.cfg.aux_models:
            raise HPLError(
                "build.segmentation=judge needs aux_models.judge.path (a model folder, or policy for π_ref)"
            )
        path = self.cfg.aux_models["judge"].path
        path = self.ref_model() if path == "policy" else resolve_model_path(path, self.cfg.model.cache_dir)
        agent = self.agent(path)
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path)
        reqs = []
        for t, a in zip(tasks, actions):
            msgs = [{"role": "user", "content": judge_prompt(t, a)}]
            text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
            ids = list(tok(text, add_special_tokens=False)["input_ids"])
            reqs.append(GenerationRequest(ids, 1, SamplingParams(self.build.judge_max_tokens, 0.0)))
        return [
            c[0].text for c in agent.engine.generate(reqs, SamplingParams(self.build.judge_max_tokens, 0.0))
        ]

    def stage_group(self) -> None:
        from rollout.multiturn import EpisodeStart

        b = self.build
        out = self.path(f"group_{b.segmentation}.jsonl")
        if self.done(out):
            return
        experts = self.experts()
        tasks = self.pair_tasks()
        recs = [experts[p.uid] for p in tasks]
        segs, stats = self._segments(recs)
        agent = self.agent(self.ref_model())
        where = [(p, r, s, e) for p, r, ss in zip(tasks, recs, segs) for s, e in ss]
        acts = {p.uid: [x["action"] for x in r["turns"]] for p, r in zip(tasks, recs)}
        starts = [
            EpisodeStart(p, forced=acts[p.uid][:s], max_policy_actions=e - s)
            for p, _, s, e in where
            for _ in range(b.negative_samples)
        ]
        eps = agent.play(starts, what="negative groups after expert prefixes")
        negs: list[tuple[int, list[str], Any]] = []  # (index into where, actions, episode)
        for i, (p, _, s, e) in enumerate(where):
            group_eps = [
                x
                for x in eps[i * b.negative_samples : (i + 1) * b.negative_samples]
                if x.status != "env_failure"
            ]
            cand = [[t.action for t in x.turns if not t.forced] for x in group_eps]
            for kept in distinct_negatives(acts[p.uid][s:e], cand, b.negatives):
                negs.append((i, kept, group_eps[cand.index(kept)]))
        # Values: each expert group that has a negative, and each negative (mean final reward of group_mc runs).
        need = sorted({i for i, _, _ in negs})
        prompts = [where[i][0] for i in need] + [where[i][0] for i, _, _ in negs]
        prefixes = [acts[where[i][0].uid][: where[i][3]] for i in need] + [
            acts[where[i][0].uid][: where[i][2]] + a for i, a, _ in negs
        ]
        vals = agent.values(prompts, prefixes, b.group_mc)
        v_w = dict(zip(need, vals[: len(need)]))
        units = []
        for j, (i, _, ep) in enumerate(negs):
            p, r, s, e = where[i]
            vw, vl = v_w[i], vals[len(need) + j]
            if group_pair(vw, vl, b.group_min_gap, b.group_min_value):
                units.append(
                    unit(
                        f"{p.uid}-g{s}-{e}-{j}",
                        "group",
                        p.text,
                        r["first_observation"],
                        turns_of(r, e),
                        turns_of(ep.record()),
                        (s, e),
                        vw,
                        vl,
                        segmentation=b.segmentation,
                    )
                )
        print(
            f"[hpl] group ({b.segmentation}): {len(where)} expert groups, {len(negs)} distinct negatives, "
            f"{len(units)} pairs kept" + (f", {stats}" if stats else ""),
            flush=True,
        )
        _write_jsonl(out, units)

    def arm_name(self, arm: str) -> str:
        return f"hpl-{self.build.segmentation}" if arm == "hpl" else arm

    def stage_train(self, arm: str) -> None:
        if arm not in KINDS_OF_ARM:
            raise HPLError(f"unknown arm {arm!r}; arms: {sorted(KINDS_OF_ARM)}")
        name = self.arm_name(arm)
        files = {
            "bc": "units_bc.jsonl",
            "traj": "traj.jsonl",
            "step": "step.jsonl",
            "group": f"group_{self.build.segmentation}.jsonl",
        }
        rows = []
        for kind in KINDS_OF_ARM[arm]:
            f = self.path(files[kind])
            if not f.is_file():
                raise HPLError(f"{f} not found: run the {kind if kind != 'bc' else 'expert'} stage first")
            rows += read_jsonl(f)
        data = self.path(f"units_{name}.jsonl")
        _write_jsonl(data, rows)
        weights = {k: self.opts.weight(k) for k in KINDS_OF_ARM[arm]}
        self._train(name, data, weights, self.ref_model(), None)

    def stage_eval(self, arm: str) -> dict[str, Any]:
        from launch.eval import environment

        name = "ref" if arm == "ref" else self.arm_name(arm)
        out = self.work / "eval" / f"{name}.json"
        if out.exists() and not self.force:
            print(f"[hpl] eval/{name}.json exists: skipped", flush=True)
            return json.loads(out.read_text())
        model = self.ref_model() if arm == "ref" else self.model_of(self.work / name)
        tasks = load_tasks(self.build.eval_tasks or str(Path(self.build.tasks).with_name("test.jsonl")))
        t0 = time.perf_counter()
        agent = self.agent(model)
        print(f"[hpl]   eval {name}: {len(tasks)} episodes ...", flush=True)
        m, episodes, _ = evaluate_episodes(
            agent, self.pool(), self.fmt, agent.limits, tasks, agent.greedy, progress=lambda _: None
        )
        report = {
            "arm": name,
            "model": model,
            "recipe": str(self.recipe),
            "overrides": self.overrides,
            "eval_tasks": len(tasks),
            "decoding": "greedy, one episode per held-out task",
            "metrics": m,
            "wall_s": time.perf_counter() - t0,
            **environment(),
            "episodes": episodes,
        }
        print(
            f"[hpl] eval {name}: success {m['env/success_rate']:.3f}, return {m['env/return_mean']:.3f} "
            f"on {len(tasks)} held-out tasks",
            flush=True,
        )
        _write_json(out, report)
        return report

    def close(self) -> None:
        for a in self._agents.values():
            del a.engine
        self._agents = {}
        if self._pool is not None:
            self._pool.close()


def _policy_turns(ep: Any) -> list[Any]:
    return [t for t in ep.turns if not t.forced]


def action_entropies(
    model_path: str, fmt: Any, recs: list[dict[str, Any]], max_tokens: int
) -> list[list[float]]:
    """Mean next-token entropy of π_ref over each expert action's tokens, per action (entropy segmentation)."""
    import torch
    from transformers import AutoModelForCausalLM

    from rollout.multiturn import transcript_row

    model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for r in recs:
            row = transcript_row(fmt, r["text"], r["first_observation"], turns_of(r), max_tokens)
            ids = torch.tensor([row.prompt_ids + row.response_ids])
            logp = torch.log_softmax(model(ids).logits[0].float(), -1)
            ent = -(logp.exp() * logp).sum(-1)  # entropy of the distribution predicting position t + 1
            P = len(row.prompt_ids)
            per = [float(ent[P + a - 1 : P + b - 1].mean()) for a, b in row.spans]
            per += [float("inf")] * (len(r["turns"]) - len(per))  # cut by max_tokens: start a group there
            out.append(per)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m launch.hpl", description=__doc__.split("\n\n")[0])
    ap.add_argument("recipe")
    ap.add_argument("--work", default=None, help="the pipeline's folder (default: the recipe's output_dir)")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma list of {', '.join(STAGES)}")
    ap.add_argument("--arms", default="sft,eto,hpl", help="arms to train and evaluate: sft, eto, hpl")
    ap.add_argument(
        "--segmentations", default=None, help="group stage + hpl arm per segmentation (default: the recipe's)"
    )
    ap.add_argument(
        "--engine", default=None, choices=("vllm", "hf"), help="default: the recipe's rollout.engine"
    )
    ap.add_argument("--force", action="store_true", help="redo stages whose outputs exist")
    ap.add_argument("--verbose", action="store_true", help="engine and library output on the console")
    ap.add_argument(
        "-o", "--override", action="append", default=[], metavar="KEY=VALUE", help="recipe override"
    )
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise HPLError(f"--stages: unknown {bad}; stages: {', '.join(STAGES)}")
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    bad = [a for a in arms if a not in KINDS_OF_ARM]
    if bad:
        raise HPLError(f"--arms: unknown {bad}; arms: {sorted(KINDS_OF_ARM)}")
    segs = [None] if not args.segmentations else [s.strip() for s in args.segmentations.split(",")]
    reports: dict[str, dict[str, Any]] = {}
    for i, seg in enumerate(segs):
        over = [*args.override, *([f"strategy.options.build.segmentation={seg}"] if seg else [])]
        pipe = Pipeline(args.recipe, args.work, over, args.engine, args.force, args.verbose)
        # Later segmentations share the expert, BC, trajectory and step data; only their groups differ.
        my_arms = arms if i == 0 else [a for a in arms if a == "hpl"]
        try:
            for stage in STAGES:
                if stage not in stages or (i > 0 and stage in ("expert", "bc", "traj", "step")):
                    continue
                if stage == "train":
                    for arm in my_arms:
                        pipe.stage_train(arm)
                elif stage == "eval":
                    for arm in (["ref"] if i == 0 else []) + my_arms:
                        reports[pipe.arm_name(arm) if arm != "ref" else "ref"] = pipe.stage_eval(arm)
                else:
                    getattr(pipe, f"stage_{stage}")()
        finally:
            pipe.close()
    return reports


def main(argv: list[str] | None = None) -> int:
    from launch.config import ConfigError

    args = parse_args(argv)
    try:
        run(args)
    except (HPLError, EvalError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
