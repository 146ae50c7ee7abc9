"""Connecting to Ray: an existing cluster (``ray job submit`` sets RAY_ADDRESS) or an embedded local one."""

from __future__ import annotations

import os


def in_ray_job() -> bool:
    """True when this process is the driver of a ``ray job submit`` job (its cwd is Ray's temporary copy)."""
    return any(k in os.environ for k in ("RAY_JOB_ID", "RAY_SUBMISSION_ID", "RAY_JOB_CONFIG_JSON_ENV_VAR"))


class ClusterTooSmall(ValueError):
    """The actors a recipe needs cannot all be placed on the cluster: asked vs available, in one line."""


def check_cluster_fits(actors: list[tuple[str, float, float]]) -> None:
    """Fail at once, with the numbers, when ``actors`` ((role, CPUs, GPUs) each) cannot be placed on the live
    nodes: Ray would otherwise queue them forever without a word (a pending demand only ``ray status`` shows).

    Checks the totals and that every actor fits on some node; not a full bin-packing (placement groups are)."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    have_cpu = sum(float(n.get("CPU", 0)) for n in nodes)
    have_gpu = sum(float(n.get("GPU", 0)) for n in nodes)
    ask_cpu = sum(a[1] for a in actors)
    ask_gpu = sum(a[2] for a in actors)
    roles: dict[str, list[float]] = {}
    for role, cpu, gpu in actors:
        r = roles.setdefault(role, [0, cpu, gpu])
        r[0] += 1
    asked = ", ".join(
        f"{int(n)} {role} × {c:g} CPU{f' + {g:g} GPU' if g else ''}" for role, (n, c, g) in roles.items()
    )
    hint = (
        "start the head with more logical CPUs (`ray start --head --num-cpus N`: the synchronous loop alternates "
        "rollout and training, so logical CPUs may exceed the cores), add nodes, or lower "
        "rollout.threads_per_worker / trainer.threads_per_learner / the worker and learner counts"
    )
    if ask_cpu > have_cpu + 1e-9 or ask_gpu > have_gpu + 1e-9:
        raise ClusterTooSmall(
            f"the recipe asks for {ask_cpu:g} CPUs and {ask_gpu:g} GPUs ({asked}); the cluster has "
            f"{have_cpu:g} CPUs and {have_gpu:g} GPUs on {len(nodes)} node(s): {hint}"
        )
    for role, cpu, gpu in actors:
        if not any(float(n.get("CPU", 0)) >= cpu and float(n.get("GPU", 0)) >= gpu for n in nodes):
            raise ClusterTooSmall(
                f"one {role} asks for {cpu:g} CPUs and {gpu:g} GPUs, more than any single node has "
                f"(largest: {max((float(n.get('CPU', 0)) for n in nodes), default=0):g} CPUs): {hint}"
            )


def init_ray(
    address: str | None,
    num_cpus_needed: int,
    num_cpus: int | None = None,
    temp_dir: str | None = None,
    quiet: bool = False,
) -> str:
    """Returns "cluster" or "local". Heavy import (ray) stays inside.

    ``quiet``: Ray does not install its own console logger (launch/quiet.py routes it to the run's logs).
    The embedded cluster runs without the dashboard UI. Ray 2.60's servers listen on all interfaces (no option
    limits them to loopback; measured with psutil); its token authentication, on by default, guards them."""
    import ray

    if ray.is_initialized():
        return "existing"
    address = address or os.environ.get("RAY_ADDRESS")
    # Workers must import the project's packages: ship the working directory's code to the cluster
    # only when the driver is not already running inside it (ray job submit --working-dir does that).
    env_vars = {
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])),
    }
    if address:
        # Inside `ray job submit` the job's own runtime env (working_dir / env_vars) already reaches every
        # actor, and Ray refuses to merge a second one that sets the same keys.
        in_job = in_ray_job()
        ray.init(
            address=address,
            runtime_env=None if in_job else {"env_vars": env_vars},
            log_to_driver=True,
            configure_logging=not quiet,
        )
        _reattach_quiet_logging()
        return "cluster"
    # Rollout and training phases alternate in the synchronous loop, so logical CPUs may exceed
    # physical cores: each actor still pins its own thread count.
    cpus = num_cpus or max(num_cpus_needed, os.cpu_count() or 1)
    ray.init(
        num_cpus=cpus,
        include_dashboard=False,
        _temp_dir=temp_dir,
        runtime_env={"env_vars": env_vars},
        log_to_driver=True,
        configure_logging=not quiet,
    )
    _reattach_quiet_logging()
    return "local"


def _reattach_quiet_logging() -> None:
    from launch.quiet import reattach

    reattach()  # ray.init resets the "ray" logger: route it back to the run's logs/driver.log


class RemoteCallTimeout(TimeoutError):
    """A remote call past its deadline (``ray.call_timeout_s``); the message names the call and the actors."""


def get_all(refs: list, names: list[str], what: str, timeout_s: float | None) -> list:
    """``ray.get(refs)`` with a deadline: results in order, or ``RemoteCallTimeout`` naming ``what`` and the
    actors (``names[i]`` for ``refs[i]``) that had not answered. A hung actor or collective never becomes an
    endless wait in the driver."""
    import ray

    wait_all(refs, names, what, timeout_s)
    return ray.get(list(refs))


def wait_all(refs: list, names: list[str], what: str, timeout_s: float | None) -> None:
    """Wait until every ref is settled (a value or an error), or raise ``RemoteCallTimeout`` naming the late."""
    import ray

    if not refs:
        return
    if timeout_s is None:
        ray.wait(list(refs), num_returns=len(refs))
        return
    _ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
    if pending:
        late = [n for r, n in zip(refs, names) if r in set(pending)]
        raise RemoteCallTimeout(
            f"{what}: no answer after {timeout_s:g} s from {', '.join(late)} (ray.call_timeout_s; the actor "
            "or a collective it waits on is hung; its log is in <output_dir>/logs/)"
        )
