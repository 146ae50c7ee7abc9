"""A hung actor becomes a clear error naming the call and the actor, never an endless wait (real Ray actors)."""

import time

import pytest

pytestmark = pytest.mark.slow


class Sleeper:
    def work(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds


def test_hung_actor_call_times_out_naming_call_and_actor(ray_cluster):
    import ray

    from launch.ray_utils import RemoteCallTimeout, get_all

    actors = [ray.remote(Sleeper).options(num_cpus=0).remote() for _ in range(2)]
    try:
        assert get_all([a.work.remote(0.0) for a in actors], ["w0", "w1"], "generate", 30.0) == [0.0, 0.0]
        t0 = time.perf_counter()
        with pytest.raises(
            RemoteCallTimeout, match=r"generate: no answer after 2 s from rollout worker 1 \("
        ):
            refs = [actors[0].work.remote(0.0), actors[1].work.remote(10_000.0)]  # the second one hangs
            get_all(refs, ["rollout worker 0", "rollout worker 1"], "generate", 2.0)
        assert time.perf_counter() - t0 < 20
    finally:
        for a in actors:
            ray.kill(a)


def test_learner_group_and_generator_calls_go_through_the_deadline():
    """Every remote call of the driver in these two classes uses the deadline helper (no bare ray.get left
    except after a successful wait)."""
    import inspect

    from rollout import generator
    from trainer import group

    for mod in (generator, group):
        src = inspect.getsource(mod)
        bare = [ln.strip() for ln in src.splitlines() if "ray.get(" in ln and "timeout" not in ln]
        allowed = {
            "results[w] = ray.get(ref)",  # after wait_all: every ref is settled
            "out.append(ray.get(ref))",
            "return blob_ref, ray.get(probe_ref)",
            "master_addr, master_port = ray.get(addr_actor.address.remote())",
            "comps = ray.get(ready[0])",  # dynamic dispatch: ready from ray.wait(..., timeout=call_timeout_s)
            "ray.get(refs)",  # weight group join: after wait_all
            "learner_probe, stats = ray.get(lrefs[0])",  # collective sync: after wait_all
            "counts = ray.get(wrefs)",
        }
        assert set(bare) <= allowed, bare
