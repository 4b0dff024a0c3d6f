"""Every key sweeper stores in an Optuna study, and the lineage rules of retried trials.

Writers (storage, engine) and readers (analysis) import these names; no module spells a key itself.
Study user attrs carry the sweep (``sweeper:`` prefix); trial user attrs carry each trial's record.
"""

from __future__ import annotations

from typing import Any

import optuna

NAME = "sweeper:name"


SPEC = "sweeper:spec"


SOURCE = "sweeper:source"


VERSION = "sweeper:version"


STATE = "sweeper:state"


CREATED_AT = "sweeper:created_at"


AGENT_PREFIX = "sweeper:agent:"


# [{at, run_cap | trials | values, budget: [before, after], queued}]: each extension of the sweep.
HISTORY = "sweeper:history"


# Study system attr: how many of a budgeted sweep's work items (grid points, run_cap tokens) agents
# have queued as WAITING trials so far (see sweeper.storage.queue).
QUEUED = "sweeper:queued"


# [{source, read, loaded, skipped: {why: count}, examples: [...]}]: what each warm-start source gave
# when the sweep was created (see sweeper.analysis.priors).
PRIORS = "sweeper:priors"


# Trial user attrs.
CONFIG = "config"


FAIL_REASON = "fail_reason"


ATTEMPT = "attempt"


RETRY_OF = "retry_of"


REPEAT_OF = "repeat_of"


# {dotted config key: value}: the agent sets these in the trial's config after building it from the
# params (see sweeper.spec.overrides), so the trainer, the trackers and the stored ``config`` agree.
CONFIG_OVERRIDES = "config_overrides"


TRACKER_RUNS = "tracker_runs"


TRACKER_ERRORS = "tracker_errors"


METRICS = "metrics"


AGENT = "agent"


HOST = "host"


DURATION_S = "duration_s"
TRIAL_DIR = "trial_dir"  # the directory the trial ran in, on its host


# {source, ref}: a prior, an earlier result loaded when the sweep was created (a warm start). It
# teaches the sampler but is no run of this sweep: no budget, no config claim, no target.
PRIOR = "prior"


def lineage(trial: optuna.trial.FrozenTrial) -> int:
    """The number of a trial's first attempt: its ``retry_of``, else its own number."""
    return int(trial.user_attrs.get(RETRY_OF, trial.number))


def is_prior(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial is a prior (loaded from an earlier result), not a run of this sweep."""
    return PRIOR in trial.user_attrs


def retry_attrs(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The user attrs a new attempt of ``trial`` inherits: what it repeats and its config overrides."""
    return {key: trial.user_attrs[key] for key in (REPEAT_OF, CONFIG_OVERRIDES) if key in trial.user_attrs}
