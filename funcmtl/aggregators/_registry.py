"""Aggregators by name: ``get(name, **options)``, ``names()``, ``describe(name)``."""

from __future__ import annotations

from funcmtl._registry import Method, registry
from funcmtl.aggregators._aligned_mtl import aligned_mtl
from funcmtl.aggregators._cagrad import cagrad
from funcmtl.aggregators._config import config
from funcmtl.aggregators._dualproj import dualproj
from funcmtl.aggregators._graddrop import graddrop
from funcmtl.aggregators._gradvac import gradvac
from funcmtl.aggregators._imtl_g import imtl_g
from funcmtl.aggregators._mean import mean
from funcmtl.aggregators._mean import sum as sum_
from funcmtl.aggregators._mgda import mgda
from funcmtl.aggregators._nash_mtl import nash_mtl
from funcmtl.aggregators._pcgrad import pcgrad
from funcmtl.aggregators._upgrad import upgrad

names, method, options, get, describe, specs, parse = registry(
    "aggregator",
    (
        Method(
            "mean",
            mean,
            "Average of the task gradients (equal loss weights).",
            "Caruana, Multitask Learning, 1997. https://link.springer.com/article/10.1023/A:1007379606734",
        ),
        Method(
            "sum",
            sum_,
            "Sum of the task gradients (gradient of the summed loss).",
            "Caruana, Multitask Learning, 1997. https://link.springer.com/article/10.1023/A:1007379606734",
        ),
        Method(
            "pcgrad",
            pcgrad,
            "Project each gradient onto the normal plane of the ones it conflicts with; sum.",
            "Yu et al., Gradient Surgery for Multi-Task Learning, 2020. "
            "https://arxiv.org/abs/2001.06782",
        ),
        Method(
            "graddrop",
            graddrop,
            "Per coordinate, keep only the positive or only the negative gradients (random sign).",
            "Chen et al., Just Pick a Sign: Optimizing Deep Multitask Models with Gradient Sign "
            "Dropout, 2020. https://arxiv.org/abs/2010.06808",
        ),
        Method(
            "mgda",
            mgda,
            "Minimum-norm point of the convex hull of the task gradients (Pareto-stationary step).",
            "Sener & Koltun, Multi-Task Learning as Multi-Objective Optimization, 2018. "
            "https://arxiv.org/abs/1810.04650",
        ),
        Method(
            "cagrad",
            cagrad,
            "Maximise the worst task improvement within a ball around the average gradient.",
            "Liu et al., Conflict-Averse Gradient Descent for Multi-task Learning, 2021. "
            "https://arxiv.org/abs/2110.14048",
        ),
        Method(
            "gradvac",
            gradvac,
            "Raise each pairwise gradient cosine to an EMA-tracked target; sum.",
            "Wang et al., Gradient Vaccine: Investigating and Improving Multi-task Optimization in "
            "Massively Multilingual Models, 2021. https://openreview.net/forum?id=F1vEjWK-lH_",
        ),
        Method(
            "imtl_g",
            imtl_g,
            "Combination with equal projections onto every unit task gradient (closed form).",
            "Liu et al., Towards Impartial Multi-task Learning, 2021. "
            "https://openreview.net/forum?id=IMPnRXEWpvr",
        ),
        Method(
            "aligned_mtl",
            aligned_mtl,
            "Align the gradients to an orthogonal set of equal norms (smallest singular value); "
            "sum.",
            "Senushkin et al., Independent Component Alignment for Multi-Task Learning, 2023. "
            "https://arxiv.org/abs/2305.19000",
        ),
        Method(
            "upgrad",
            upgrad,
            "Average of the task gradients each projected onto the dual cone of all of them.",
            "Quinton & Rey, Jacobian Descent for Multi-Objective Optimization, 2024. "
            "https://arxiv.org/abs/2406.16232",
        ),
        Method(
            "dualproj",
            dualproj,
            "Project the average gradient onto the dual cone of the task gradients.",
            "Quinton & Rey, Jacobian Descent for Multi-Objective Optimization, 2024. "
            "https://arxiv.org/abs/2406.16232",
        ),
        Method(
            "nash_mtl",
            nash_mtl,
            "Nash bargaining solution between the tasks over the update direction.",
            "Navon et al., Multi-Task Learning as a Bargaining Game, 2022. "
            "https://arxiv.org/abs/2202.01017",
        ),
        Method(
            "config",
            config,
            "Direction with equal cosine to every task gradient (pseudo-inverse of unit "
            "gradients).",
            "Liu et al., ConFIG: Towards Conflict-free Training of Physics Informed Neural "
            "Networks, 2024. https://arxiv.org/abs/2408.11104",
        ),
    ),
)
