"""Loss weightings by name: ``get(name, **options)``, ``names()``, ``describe(name)``."""

from __future__ import annotations

from funcmtl._registry import Method, registry
from funcmtl.weightings._dwa import dwa
from funcmtl.weightings._equal import equal
from funcmtl.weightings._famo import famo
from funcmtl.weightings._geometric_mean import geometric_mean
from funcmtl.weightings._gradnorm import gradnorm
from funcmtl.weightings._imtl_l import imtl_l
from funcmtl.weightings._rlw import rlw
from funcmtl.weightings._uncertainty import uncertainty

names, method, options, get, describe, specs, parse = registry(
    "loss weighting",
    (
        Method(
            "equal",
            equal,
            "Weight 1 for every task (sum of the task losses).",
            "Caruana, Multitask Learning, 1997. https://doi.org/10.1023/A:1007379606734",
        ),
        Method(
            "uncertainty",
            uncertainty,
            "Learnable log-variances s; minimise Σ e^{-s}L + s, weights e^{-s}.",
            "Kendall, Gal & Cipolla, Multi-Task Learning Using Uncertainty to Weigh Losses "
            "for Scene Geometry and Semantics, 2018. https://arxiv.org/abs/1705.07115",
        ),
        Method(
            "dwa",
            dwa,
            "Dynamic Weight Average: T·softmax of the last two periods' loss ratios / τ.",
            "Liu, Johns & Davison, End-to-End Multi-Task Learning with Attention, 2019. "
            "https://arxiv.org/abs/1803.10704",
        ),
        Method(
            "rlw",
            rlw,
            "Random loss weighting: softmax of a standard normal draw from the key.",
            "Lin, Ye, Xu, Shi & Zhang, Reasonable Effectiveness of Random Weighting: A Litmus "
            "Test for Multi-Task Learning, 2022. https://openreview.net/forum?id=jjtFD8A1Wx",
        ),
        Method(
            "gradnorm",
            gradnorm,
            "Learn weights so weighted gradient norms track relative training rates.",
            "Chen, Badrinarayanan, Lee & Rabinovich, GradNorm: Gradient Normalization for "
            "Adaptive Loss Balancing in Deep Multitask Networks, 2018. "
            "https://proceedings.mlr.press/v80/chen18a.html",
        ),
        Method(
            "famo",
            famo,
            "Learn task logits so that all log-losses decrease at an equal rate.",
            "Liu, Feng, Stone & Liu, FAMO: Fast Adaptive Multitask Optimization, 2023. "
            "https://arxiv.org/abs/2306.03792",
        ),
        Method(
            "imtl_l",
            imtl_l,
            "IMTL-L: learnable scales e^{s}; minimise Σ e^{s}L − s, so scaled losses equal 1.",
            "Liu et al., Towards Impartial Multi-task Learning, 2021. "
            "https://openreview.net/forum?id=IMPnRXEWpvr",
        ),
        Method(
            "geometric_mean",
            geometric_mean,
            "Minimise the geometric mean (Π L)^{1/T}: weights GM / (T·L).",
            "Chennupati, Sistu, Yogamani & Rawashdeh, MultiNet++: Multi-Stream Feature "
            "Aggregation and Geometric Loss Strategy for Multi-Task Learning, 2019. "
            "https://arxiv.org/abs/1904.08492",
        ),
    ),
)
