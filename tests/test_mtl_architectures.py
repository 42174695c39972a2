"""Task specs and multi-task architectures: shapes, hand-written re-computations, the
shared / task-specific partition, fm.init, vmap over stacked params and error messages."""

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

import funcmtl as fm
from funcmtl.mtl import Task, check_tasks, task_losses, task_metrics, task_weights
from funcmtl.mtl._architectures import MultiTaskModel, output_head
from funcmtl.mtl._cross_stitch import CrossStitch, CrossStitchUnit, cross_stitch_mlp
from funcmtl.mtl._hard_sharing import HardSharing, hard_sharing_mlp
from funcmtl.mtl._mmoe import MMoE
from funcmtl.mtl._ple import CGC, PLE
from funcmtl.mtl._soft_sharing import SoftSharing, soft_sharing_mlp

IN, N = 8, 16
NAN = float("nan")
TASKS = (
    Task("digit", "classification", 10, mask_value=-1),
    Task("age", "regression", 1, mask_value=NAN, weight=0.5),
    Task("spam", "binary", 1),
)
NAMES = [t.name for t in TASKS]

ARCHITECTURES = {
    "hard": lambda: hard_sharing_mlp(IN, [16, 12], TASKS, head_hidden=(6,)),
    "mmoe": lambda: MMoE(IN, 3, [10, 6], TASKS, tower_hidden=(5,)),
    "cgc": lambda: CGC(IN, 2, 2, [6], TASKS, tower_hidden=(4,)),
    "ple": lambda: PLE(IN, 2, 1, [7, 6], TASKS, tower_hidden=(4,), num_levels=3),
    "soft": lambda: soft_sharing_mlp(IN, [8, 6], TASKS),
    "cross": lambda: cross_stitch_mlp(IN, [8, 6], TASKS),
}


def inputs(seed: int = 0) -> torch.Tensor:
    return torch.randn(N, IN, generator=torch.Generator().manual_seed(seed))


def init(model: nn.Module, seed: int = 0, dtype=None) -> dict[str, torch.Tensor]:
    return fm.init(model, fm.random.key(seed), dtype=dtype)[0]


def run(model: nn.Module, params, x):
    return fm.functional(model)[0](params, {}, x)[0]


# ---- hand-written forward passes in float64 -------------------------------------------------


def lin(p, prefix, x):
    out = x @ p[f"{prefix}.weight"].T
    return out + p[f"{prefix}.bias"] if f"{prefix}.bias" in p else out


def relu_mlp(p, prefix, x, depth):
    """``depth`` Linear-ReLU layers named ``prefix.0``, ``prefix.2``, ..."""
    for j in range(depth):
        x = torch.relu(lin(p, f"{prefix}.{2 * j}", x))
    return x


def head(p, prefix, x, depth, task):
    out = lin(p, f"{prefix}.{2 * depth}", relu_mlp(p, prefix, x, depth))
    return out if task.kind == "classification" else out[:, 0]


def experts(p, prefix, count, x, depth):
    return torch.stack([relu_mlp(p, f"{prefix}.{i}", x, depth) for i in range(count)], dim=1)


def gated(p, gate, stack, x):
    weights = torch.softmax(x @ p[f"{gate}.weight"].T, dim=-1)
    return torch.einsum("ne,ned->nd", weights, stack)


def to64(params):
    return {name: value.double() for name, value in params.items()}


# ---- Task -----------------------------------------------------------------------------------


def test_task_defaults_by_kind():
    digit, age, spam = TASKS
    assert digit.loss is fm.losses.cross_entropy and list(digit.metrics) == ["accuracy", "f1"]
    assert spam.loss is fm.losses.binary_cross_entropy and list(spam.metrics) == ["accuracy"]
    assert age.loss is fm.losses.mse and list(age.metrics) == ["mse", "mae", "r2"]
    assert (digit.output_shape, age.output_shape, spam.output_shape) == ((10,), (), ())
    assert Task("xyz", "regression", 3).output_shape == (3,)
    assert task_weights(TASKS).tolist() == [1.0, 0.5, 1.0]
    assert hash(digit) == hash(Task("digit", "classification", 10, mask_value=-1))


def targets_with_missing(gen):
    digit = torch.randint(0, 10, (N,), generator=gen)
    digit[[1, 5, 6]] = -1
    age = torch.randn(N, generator=gen)
    age[[0, 5, 9, 10]] = NAN
    spam = torch.randint(0, 2, (N,), generator=gen).float()
    return {"digit": digit, "age": age, "spam": spam}


def random_outputs(gen, *batch):
    return {
        "digit": torch.randn(*batch, N, 10, generator=gen),
        "age": torch.randn(*batch, N, generator=gen),
        "spam": torch.randn(*batch, N, generator=gen),
    }


def test_task_losses_equal_torch_functional_with_missing_labels():
    gen = torch.Generator().manual_seed(1)
    outputs, targets = random_outputs(gen), targets_with_missing(gen)
    valid = ~targets["age"].isnan()
    expected = torch.stack(
        [
            F.cross_entropy(outputs["digit"], targets["digit"], ignore_index=-1),
            F.mse_loss(outputs["age"][valid], targets["age"][valid]),
            F.binary_cross_entropy_with_logits(outputs["spam"], targets["spam"]),
        ]
    )
    losses = task_losses(TASKS, outputs, targets)
    assert losses.shape == (3,)
    torch.testing.assert_close(losses, expected)

    # An explicit mask combines with mask_value: drop examples 0..3 from every task.
    keep = torch.arange(N) >= 4
    masked = task_losses(TASKS, outputs, targets, masks={t: keep for t in NAMES})
    digit_keep = keep & (targets["digit"] >= 0)
    torch.testing.assert_close(
        masked[0], F.cross_entropy(outputs["digit"][digit_keep], targets["digit"][digit_keep])
    )
    torch.testing.assert_close(
        masked[1], F.mse_loss(outputs["age"][keep & valid], targets["age"][keep & valid])
    )
    torch.testing.assert_close(
        masked[2], F.binary_cross_entropy_with_logits(outputs["spam"][keep], targets["spam"][keep])
    )


def test_task_losses_and_metrics_vmap_over_members():
    gen = torch.Generator().manual_seed(2)
    stacked, targets = random_outputs(gen, 4), targets_with_missing(gen)
    batched = vmap(lambda out: task_losses(TASKS, out, targets))(stacked)
    looped = torch.stack(
        [task_losses(TASKS, {k: v[i] for k, v in stacked.items()}, targets) for i in range(4)]
    )
    torch.testing.assert_close(batched, looped)
    scores = vmap(lambda out: task_metrics(TASKS, out, targets))(stacked)
    assert all(v.shape == (4,) for v in scores.values())


def test_task_metrics_mask_missing_labels():
    gen = torch.Generator().manual_seed(3)
    outputs, targets = random_outputs(gen), targets_with_missing(gen)
    scores = task_metrics(TASKS, outputs, targets)
    assert list(scores) == [
        "digit/accuracy",
        "digit/f1",
        "age/mse",
        "age/mae",
        "age/r2",
        "spam/accuracy",
    ]
    labelled = targets["digit"] >= 0
    hits = outputs["digit"].argmax(-1)[labelled] == targets["digit"][labelled]
    torch.testing.assert_close(scores["digit/accuracy"], hits.float().mean())
    valid = ~targets["age"].isnan()
    error = outputs["age"][valid] - targets["age"][valid]
    torch.testing.assert_close(scores["age/mae"], error.abs().mean())
    y = targets["age"][valid]
    r2 = 1 - error.square().sum() / (y - y.mean()).square().sum()
    torch.testing.assert_close(scores["age/r2"], r2)
    spam_hits = (outputs["spam"] > 0).float() == targets["spam"]
    torch.testing.assert_close(scores["spam/accuracy"], spam_hits.float().mean())


# ---- architectures: shapes, vmap, init --------------------------------------------------


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_output_keys_and_shapes(arch):
    model = ARCHITECTURES[arch]()
    assert isinstance(model, MultiTaskModel) and model.task_names == tuple(NAMES)
    for out in (model(inputs()), run(model, init(model), inputs())):
        assert list(out) == NAMES
        assert {k: tuple(v.shape) for k, v in out.items()} == {
            "digit": (N, 10),
            "age": (N,),
            "spam": (N,),
        }


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_init_draws_from_the_key_and_vmaps_over_stacked_params(arch):
    model = ARCHITECTURES[arch]()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every parameter has a reset_parameters
        a, a_again, b = init(model, 0), init(model, 0), init(model, 1)
    for name in a:
        torch.testing.assert_close(a[name], a_again[name])
        if ".stitches." not in f".{name}":  # cross-stitch units start at fixed values
            assert not torch.equal(a[name], b[name]), name

    apply, _, _ = fm.functional(model)
    stacked = fm.tree.stack([init(model, seed) for seed in range(3)])
    x = inputs()
    batched = vmap(lambda p: apply(p, {}, x)[0])(stacked)
    for i in range(3):
        member = run(model, {k: v[i] for k, v in stacked.items()}, x)
        for task in NAMES:
            torch.testing.assert_close(batched[task][i], member[task])


def test_hard_sharing_dropout_is_driven_by_the_key():
    model = hard_sharing_mlp(IN, [32], TASKS, dropout=0.5)
    apply, params, _ = fm.functional(model)
    x, k = inputs(), fm.random.key(0)
    first = apply(params, {}, x, train=True, key=k)[0]["digit"]
    torch.testing.assert_close(first, apply(params, {}, x, train=True, key=k)[0]["digit"])
    other = apply(params, {}, x, train=True, key=fm.random.key(1))[0]["digit"]
    assert not torch.equal(first, other)


# ---- architectures: hand-written re-computations -----------------------------------------


def test_hard_sharing_equals_trunk_then_heads():
    trunk = nn.Sequential(nn.Linear(IN, 12), nn.Tanh())
    heads = {"digit": nn.Linear(12, 10), "age": nn.Sequential(nn.Linear(12, 1), nn.Flatten(0))}
    model, x = HardSharing(trunk, heads), inputs()
    out = model(x)
    z = trunk(x)
    torch.testing.assert_close(out["digit"], heads["digit"](z))
    torch.testing.assert_close(out["age"], heads["age"](z))
    assert model.shared_parameter_names() == ["shared.0.weight", "shared.0.bias"]
    assert model.task_parameter_names()["digit"] == [
        "tasks.heads.digit.net.weight",
        "tasks.heads.digit.net.bias",
    ]
    assert model.task_of_parameter("tasks.heads.age.net.0.bias") == "age"


def test_hard_sharing_mlp_equals_float64_recomputation():
    model = hard_sharing_mlp(IN, [16, 12], TASKS, head_hidden=(6,))
    p, x = to64(init(model, 3)), inputs().double()
    z = relu_mlp(p, "shared", x, 2)
    out = run(model, p, x)
    for task in TASKS:
        expected = head(p, f"tasks.heads.{task.name}.net", z, 1, task)
        torch.testing.assert_close(out[task.name], expected, rtol=1e-12, atol=1e-12)


def mmoe_by_hand(p, x, num_experts, depth, tower_depth):
    stack = experts(p, "shared.experts", num_experts, x, depth)  # (N, E, D)
    return {
        t.name: head(
            p,
            f"tasks.heads.{t.name}.tower",
            gated(p, f"tasks.heads.{t.name}.gate", stack, x),
            tower_depth,
            t,
        )
        for t in TASKS
    }


def test_mmoe_equals_float64_recomputation():
    model = MMoE(IN, 3, [10, 6], TASKS, tower_hidden=(5,))
    p32, x32 = init(model, 4), inputs()
    p, x = to64(p32), x32.double()
    expected = mmoe_by_hand(p, x, num_experts=3, depth=2, tower_depth=1)
    assert model.shared(x32).shape == (N, 3, 6)
    for name, value in run(model, p, x).items():
        torch.testing.assert_close(value, expected[name], rtol=1e-12, atol=1e-12)
    for name, value in run(model, p32, x32).items():
        torch.testing.assert_close(value.double(), expected[name], rtol=1e-5, atol=1e-5)


def cgc_by_hand(p, x, shared_count, task_count, depth, tower_depth):
    shared = experts(p, "shared.experts", shared_count, x, depth)
    out = {}
    for t in TASKS:
        prefix = f"tasks.heads.{t.name}"
        own = experts(p, f"{prefix}.own_experts.experts", task_count, x, depth)
        mixed = gated(p, f"{prefix}.gate", torch.cat([own, shared], dim=1), x)
        out[t.name] = head(p, f"{prefix}.tower", mixed, tower_depth, t)
    return out


def test_cgc_equals_float64_recomputation():
    model = CGC(IN, 2, 3, [6], TASKS, tower_hidden=(4,))
    p, x = to64(init(model, 5)), inputs().double()
    expected = cgc_by_hand(p, x, shared_count=2, task_count=3, depth=1, tower_depth=1)
    for name, value in run(model, p, x).items():
        torch.testing.assert_close(value, expected[name], rtol=1e-12, atol=1e-12)


def test_ple_equals_float64_recomputation_and_one_level_is_cgc():
    levels, shared_count, task_count = 3, 2, 1
    model = PLE(IN, shared_count, task_count, [7, 6], TASKS, tower_hidden=(4,), num_levels=levels)
    p, x = to64(init(model, 6)), inputs().double()
    task_in, shared_in = {t: x for t in NAMES}, x
    for j in range(levels):
        pre = f"levels.{j}"
        shared = experts(p, f"{pre}.shared_experts.experts", shared_count, shared_in, 2)
        own = {
            t: experts(p, f"{pre}.task_experts.{t}.experts", task_count, task_in[t], 2)
            for t in NAMES
        }
        out = {
            t: gated(p, f"{pre}.task_gates.{t}", torch.cat([own[t], shared], 1), task_in[t])
            for t in NAMES
        }
        if j < levels - 1:  # the shared gate mixes every expert of the level
            every = torch.cat([own[t] for t in NAMES] + [shared], 1)
            shared_in = gated(p, f"{pre}.shared_gate", every, shared_in)
        else:
            assert f"{pre}.shared_gate.weight" not in p
        task_in = out
    got = run(model, p, x)
    for t in TASKS:
        expected = head(p, f"towers.{t.name}", task_in[t.name], 1, t)
        torch.testing.assert_close(got[t.name], expected, rtol=1e-12, atol=1e-12)

    cgc = CGC(IN, 2, 3, [6], TASKS, tower_hidden=(4,))
    ple = PLE(IN, 2, 3, [6], TASKS, tower_hidden=(4,), num_levels=1)
    c = init(cgc, 7)
    renamed = {}
    for name, value in c.items():
        parts = name.split(".")
        if parts[0] == "shared":
            new = "levels.0.shared_experts." + name[len("shared.") :]
        elif parts[3] == "own_experts":
            new = f"levels.0.task_experts.{parts[2]}." + ".".join(parts[4:])
        elif parts[3] == "gate":
            new = f"levels.0.task_gates.{parts[2]}.weight"
        else:
            new = f"towers.{parts[2]}." + ".".join(parts[4:])
        renamed[new] = value
    assert sorted(renamed) == sorted(n for n, _ in ple.named_parameters())
    for name, value in run(ple, renamed, inputs()).items():
        torch.testing.assert_close(value, run(cgc, c, inputs())[name])


def test_coupling_penalty_equals_hand_computed_value():
    towers = {t: nn.Linear(2, 2) for t in ("a", "b", "c")}
    with torch.no_grad():
        for i, tower in enumerate(towers.values()):
            tower.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]) * (i + 1))
            tower.bias.copy_(torch.tensor([0.0, 1.0]) * i)
    model = SoftSharing(towers)
    assert model.coupled == ("weight", "bias") and model.shared_parameter_names() == []
    # ‖W‖² = 30; weights W, 2W, 3W: (1 + 4 + 1)·30 = 180; biases 0, e, 2e: 1 + 4 + 1 = 6.
    params = fm.functional(model)[1]
    torch.testing.assert_close(model.coupling_penalty(params), torch.tensor(186.0))

    mlps = soft_sharing_mlp(IN, [8, 6], TASKS)  # hidden layers coupled, output layers not
    assert mlps.coupled == ("0.weight", "0.bias", "2.weight", "2.bias")
    p = init(mlps, 0)
    expected = sum(
        (p[f"towers.{a}.{n}"] - p[f"towers.{b}.{n}"]).square().sum()
        for i, a in enumerate(NAMES)
        for b in NAMES[i + 1 :]
        for n in mlps.coupled
    )
    torch.testing.assert_close(mlps.coupling_penalty(p), expected)
    # Pure: usable inside a functional loss, under grad and vmap over members.
    grads = torch.func.grad(mlps.coupling_penalty)(p)
    torch.testing.assert_close(
        grads["towers.age.0.bias"],
        2 * (2 * p["towers.age.0.bias"] - p["towers.digit.0.bias"] - p["towers.spam.0.bias"]),
    )
    assert grads["towers.age.4.weight"].abs().sum() == 0
    stacked = fm.tree.stack([p, init(mlps, 1)])
    torch.testing.assert_close(vmap(mlps.coupling_penalty)(stacked)[0], expected)


def test_cross_stitch_units_start_near_identity_and_mix_columns():
    unit = CrossStitchUnit(3)
    torch.testing.assert_close(
        unit.weight, torch.tensor([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9]])
    )
    stacked = torch.randn(3, N, 4)
    torch.testing.assert_close(
        unit(stacked)[1], 0.05 * stacked[0] + 0.9 * stacked[1] + 0.05 * stacked[2]
    )
    two = CrossStitchUnit(2)
    torch.testing.assert_close(two.weight, torch.tensor([[0.9, 0.1], [0.1, 0.9]]))


def test_cross_stitch_at_identity_equals_independent_columns():
    model = cross_stitch_mlp(IN, [8, 6], TASKS, alpha_same=1.0, alpha_diff=0.0)
    x, out = inputs(), None
    out = model(x)
    for task in NAMES:
        h = x
        for stage in model.columns[task]:
            h = stage(h)
        torch.testing.assert_close(out[task], model.heads[task](h))
    assert model.shared_parameter_names() == ["stitches.0.weight", "stitches.1.weight"]


# ---- the shared / task-specific partition ------------------------------------------------


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_parameter_names_partition_named_parameters(arch):
    model = ARCHITECTURES[arch]()
    names = [n for n, _ in model.named_parameters()]
    shared, owned = model.shared_parameter_names(), model.task_parameter_names()
    assert list(owned) == NAMES and all(owned.values())
    groups = [shared, *owned.values()]
    assert sorted(n for group in groups for n in group) == sorted(names)  # disjoint, covering
    for task, group in owned.items():
        assert all(model.task_of_parameter(n) == task for n in group)
    assert all(model.task_of_parameter(n) is None for n in shared)
    if arch in ("hard", "mmoe", "cgc"):  # the shared/tasks split
        assert shared and all(n.startswith("shared.") for n in shared)
        assert all(n.startswith(f"tasks.heads.{t}.") for t, g in owned.items() for n in g)
        features = model.shared(inputs())  # the trunk's output feeds every head
        assert isinstance(features, torch.Tensor) and features.shape[0] == inputs().shape[0]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_partition_matches_which_outputs_depend_on_a_parameter(arch):
    """A task's parameters get no gradient from other tasks; shared ones from every task."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = ARCHITECTURES[arch]()
        if arch == "cross":  # at identity the columns are independent
            model = cross_stitch_mlp(IN, [8, 6], TASKS, alpha_same=1.0, alpha_diff=0.0)
    params = dict(model.named_parameters())
    with torch.no_grad():  # positive biases keep the small ReLU nets from dying entirely
        for name, value in params.items():
            if name.endswith("bias"):
                value.fill_(1.0)
    out, gen = model(inputs()), torch.Generator().manual_seed(0)
    for task in NAMES:
        probe = (out[task] * torch.randn(out[task].shape, generator=gen)).sum()
        grads = torch.autograd.grad(
            probe, list(params.values()), retain_graph=True, allow_unused=True
        )
        for (name, _), grad in zip(params.items(), grads, strict=True):
            reaches = grad is not None and bool(grad.abs().sum() > 0)
            owner = model.task_of_parameter(name)
            assert reaches == (owner in (None, task)), (task, name)


def test_ple_shared_parameters_follow_the_shared_gate():
    model = PLE(IN, 1, 1, [4], TASKS[:2], num_levels=3)
    owned = model.task_parameter_names()["digit"]
    assert owned == [
        "levels.1.task_gates.digit.weight",
        "levels.2.task_experts.digit.experts.0.0.weight",
        "levels.2.task_experts.digit.experts.0.0.bias",
        "levels.2.task_gates.digit.weight",
        "towers.digit.0.weight",
        "towers.digit.0.bias",
    ]
    one_level = PLE(IN, 1, 1, [4], TASKS[:2], num_levels=1).shared_parameter_names()
    assert one_level == [
        "levels.0.shared_experts.experts.0.0.weight",
        "levels.0.shared_experts.experts.0.0.bias",
    ]


# ---- errors -------------------------------------------------------------------------------


BAD = [
    (
        lambda: Task("t", "ordinal", 3),
        r"`kind` must be one of \('classification', 'binary', "
        r"'regression'\); got 'ordinal'",
    ),
    (
        lambda: Task("t", "regression", 0),
        r"Task 't': `output_size` must be an int >= 1 for a "
        r"regression task; got 0",
    ),
    (lambda: Task("t", "classification", 1), r"int >= 2 for a classification task; got 1"),
    (
        lambda: Task("a.b", "binary"),
        r"Task `name` must be a non-empty string without '\.' or "
        r"'/'; got 'a\.b'",
    ),
    (lambda: Task("items", "binary"), r"clashes with an nn\.ModuleDict attribute"),
    (lambda: Task("t", "classification", 3, mask_value=NAN), r"integer class id such as -1"),
    (lambda: Task("t", "binary", weight=-1.0), r"`weight` must be a finite float >= 0; got -1"),
    (lambda: Task("t", "binary", loss="mse"), r"`loss` must be callable"),
    (lambda: check_tasks([TASKS[0], TASKS[0]]), r"unique names; found duplicates \['digit'\]"),
    (lambda: check_tasks([]), r"non-empty sequence of Task"),
    (lambda: task_losses(TASKS, {}, {}), r"`outputs` has no entry for task 'digit'"),
    (
        lambda: task_losses(TASKS[1:2], {"age": torch.zeros(4)}, {"age": torch.zeros(5)}),
        r"loss of task 'age' \(regression\): `target` must have the shape of `pred` \(4,\)",
    ),
    (
        lambda: task_losses(TASKS[1:2], {"age": torch.zeros(4, 1)}, {"age": torch.zeros(4)}),
        r"outputs\['age'\] must have shape \(N,\) for a regression task .* got \(4, 1\)",
    ),
    (lambda: MMoE(IN, 0, [4], TASKS), r"`num_experts` must be a positive int; got 0"),
    (lambda: MMoE(IN, 2, [], TASKS), r"`expert_hidden` must be a non-empty sequence"),
    (lambda: PLE(IN, 1, 1, [4], TASKS, num_levels=0), r"`num_levels` must be a positive int"),
    (lambda: HardSharing(nn.Identity(), {}), r"`heads` must be a non-empty dict"),
    (lambda: HardSharing(nn.Identity(), {"a": "linear"}), r"`heads\['a'\]` must be an nn\."),
    (lambda: hard_sharing_mlp(IN, [4], TASKS, dropout=1.5), r"`dropout` must lie in \[0, 1\)"),
    (lambda: SoftSharing({"a": nn.Linear(2, 3)}, coupled=["bias", "nope"]), r"\['nope'\] do not"),
    (
        lambda: CrossStitch(
            {"a": [nn.Linear(2, 2)], "b": []}, {"a": nn.Identity(), "b": nn.Identity()}
        ),
        r"same number \(>= 1\) of stages; got \{'a': 1, 'b': 0\}",
    ),
    (
        lambda: CrossStitch({"a": [nn.Linear(2, 2)]}, {"b": nn.Identity()}),
        r"`heads` must have the tasks of `columns` \['a'\]; got \['b'\]",
    ),
    (lambda: output_head(4, "digit"), r"`task` must be a Task; got str"),
    (
        lambda: hard_sharing_mlp(IN, [4], TASKS).task_of_parameter("shared.9.weight"),
        r"HardSharing has no parameter 'shared\.9\.weight'",
    ),
]


@pytest.mark.parametrize("make, message", BAD)
def test_bad_input_messages(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_cross_stitch_shape_mismatch_message():
    model = CrossStitch(
        {"a": [nn.Linear(2, 3)], "b": [nn.Linear(2, 4)]}, {"a": nn.Identity(), "b": nn.Identity()}
    )
    with pytest.raises(
        ValueError,
        match=r"stage-0 outputs, which must have one shape; got "
        r"\(5, 3\), \(5, 4\)",
    ):
        model(torch.randn(5, 2))
    assert math.isclose(float(model.stitches[0].weight[0, 1].detach()), 0.1, rel_tol=1e-6)
