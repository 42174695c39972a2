"""Vectorized ensembles: K models as one stacked pytree, trained in one ``vmap``."""

from funcmtl.ensemble._combine import (
    disagreement,
    expected_entropy,
    mean_and_variance,
    mean_binary_logits,
    mean_log_probs,
    mean_logits,
    mean_probs,
    mutual_information,
    pairwise_disagreement,
    predictive_entropy,
    vote,
)
from funcmtl.ensemble._members import (
    concat_members,
    init_members,
    init_states,
    member,
    member_module,
    num_members,
)
from funcmtl.ensemble._predict import evaluate, member_scores, predict
from funcmtl.ensemble._step import make_step

__all__ = [
    "concat_members",
    "disagreement",
    "evaluate",
    "expected_entropy",
    "init_members",
    "init_states",
    "make_step",
    "mean_and_variance",
    "mean_binary_logits",
    "mean_log_probs",
    "mean_logits",
    "mean_probs",
    "member",
    "member_module",
    "member_scores",
    "mutual_information",
    "num_members",
    "pairwise_disagreement",
    "predict",
    "predictive_entropy",
    "vote",
]
