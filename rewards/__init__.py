"""Reward plugins and the batch scorer.

- :mod:`rewards.registry`  the plugin contract (with an example), ``REWARDS``, ``register_reward``,
  ``resolve_reward`` (registered name, ``pkg.mod:fn`` or ``path/to/file.py:fn``).
- :mod:`rewards.math`      ``math``: final-answer equivalence with math-verify.
- :mod:`rewards.format`    ``format``: a regular-expression check (default: a ``\\boxed{}`` answer).
- :mod:`rewards.overlong`  ``overlong``: DAPO's soft length penalty over a buffer before the cap.
- :mod:`rewards.guards`    ``copied_expression``: an answer that copies the question's expression.
- :mod:`rewards.gqr`       GQR: the query-list prompt, list parsing and scores; ``gqr_ctr`` (list CTR from a
  frozen CTR model), ``gqr_hit`` (hit@n) and the list monitors ``gqr_malformed`` / ``gqr_short`` / ``gqr_valid``.
- :mod:`rewards.chronoqa`  ``chronoqa``: ChronoQA answer check (normalised containment / exact, yes/no by
  polarity) and the answer-check registry of ``launch.eval --task chronoqa``.
- :mod:`rewards.env`       ``env_return`` / ``env_won``: a multi-turn episode's final reward / success.
- :mod:`rewards.ctr_model` GQR's CTR model over (query, candidate): features, trainer CLI, cached loader.
- :mod:`rewards.scorer`    ``RewardScorer``: calls every plugin once per batch, isolated in a worker process,
  and fills in ``Sample.reward`` / ``reward_details`` / ``correct``.
"""
