"""funcmtl.datasets against independent references: scikit-learn's digits, numpy-written files,
the MMoE paper's generator and a float64 re-implementation of the CAGrad toy problem."""

import inspect
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import funcmtl as fm
import funcmtl.datasets as ds
from funcmtl.mtl import Task


@pytest.fixture(scope="module")
def sklearn_digits():
    digits = load_digits()
    index = {image.astype(np.uint8).tobytes(): i for i, image in enumerate(digits.images)}
    assert len(index) == 1797  # every image is distinct, so pixels identify the source image
    return digits, index


def source_images(dataset, index):
    """Indices (into load_digits) of the left and right image of every pair, from the pixels."""
    pixels = dataset.inputs.numpy().reshape(-1, 8, 16) * 16
    assert np.array_equal(pixels, np.round(pixels))
    pixels = pixels.astype(np.uint8)
    left = [index[np.ascontiguousarray(p[:, :8]).tobytes()] for p in pixels]
    right = [index[np.ascontiguousarray(p[:, 8:]).tobytes()] for p in pixels]
    return np.array(left), np.array(right)


# --- embedded digits and MultiDigits -------------------------------------------------------


def test_embedded_digits_equal_sklearn_load_digits(sklearn_digits):
    digits, _ = sklearn_digits
    images, labels = ds.digits()
    assert images.dtype == torch.uint8 and images.shape == (1797, 8, 8)
    assert np.array_equal(images.numpy().astype(np.float64), digits.images)
    assert np.array_equal(labels.numpy(), digits.target)
    assert ds.DIGITS_PATH.parent.name == "datasets" and ds.DIGITS_PATH.is_file()


def test_multidigits_pairs_are_two_source_images_side_by_side(sklearn_digits):
    digits, index = sklearn_digits
    data = ds.multidigits(num_pairs=600, seed=3)
    assert len(data) == 600 and data.num_features == 128 and data.inputs.dtype == torch.float32
    assert [t.name for t in data.tasks] == ["left", "right", "sum"]
    assert [t.kind for t in data.tasks] == ["classification", "classification", "regression"]
    left, right = source_images(data, index)
    assert np.array_equal(data.targets["left"].numpy(), digits.target[left])
    assert np.array_equal(data.targets["right"].numpy(), digits.target[right])
    expected_sum = (digits.target[left] + digits.target[right]) / 18.0
    assert np.allclose(data.targets["sum"].numpy(), expected_sum, atol=1e-7)
    # The pixels of row r of the 8x16 picture sit at columns 16r .. 16r+15, scaled by 1/16.
    row = data.inputs[0].numpy().reshape(8, 16)
    assert np.array_equal(row[:, :8], digits.images[left[0]] / 16)
    assert data.inputs.min() >= 0 and data.inputs.max() <= 1
    assert len(set(left.tolist())) > 300  # pairs draw from the whole pool


def test_multidigits_splits_share_no_source_image_and_follow_the_seed(sklearn_digits):
    _, index = sklearn_digits
    train, val, test = ds.multidigits_splits(seed=0)
    assert (len(train), len(val), len(test)) == (8000, 1000, 1000)
    parts = (train, val, test)
    pools = [set(np.concatenate(source_images(part, index)).tolist()) for part in parts]
    assert not pools[0] & pools[2] and not pools[0] & pools[1] and not pools[1] & pools[2]
    assert len(pools[0]) <= round(0.8 * 1797) and len(pools[2]) <= 1797 - round(0.9 * 1797)
    again = ds.load_splits("multidigits", seed=0)
    assert all(torch.equal(a.inputs, b.inputs) for a, b in zip(parts, again, strict=True))
    other = ds.multidigits_splits(seed=1, num_pairs=(50, 10, 10))
    assert not torch.equal(other[0].inputs, train.inputs[:50])
    assert torch.equal(ds.multidigits(200, seed=5).inputs, ds.multidigits(200, seed=5).inputs)
    assert not torch.equal(ds.multidigits(200, seed=5).inputs, ds.multidigits(200, 6).inputs)


# --- MMoE synthetic -----------------------------------------------------------------------


@pytest.mark.parametrize("num_tasks, correlation", [(2, 0.0), (2, 0.5), (2, -0.3), (4, 0.3)])
def test_synthetic_weight_vectors_have_the_requested_cosine(num_tasks, correlation):
    weights = ds.synthetic_params(num_tasks, correlation, 100, seed=2, scale=1.5).weights
    norms = weights.norm(dim=1)
    assert torch.allclose(norms, torch.full_like(norms, 1.5), atol=1e-12)
    cosine = (weights @ weights.T) / torch.outer(norms, norms)
    expected = torch.full_like(cosine, correlation).fill_diagonal_(1.0)
    assert torch.allclose(cosine, expected, atol=1e-6)
    if num_tasks == 2:  # the paper's w2 = c (p u1 + sqrt(1 - p²) u2) with w1 = c u1
        u1 = weights[0] / 1.5
        u2 = (weights[1] / 1.5 - correlation * u1) / math.sqrt(1 - correlation**2)
        assert abs(float(u1 @ u2)) < 1e-12 and abs(float(u2.norm()) - 1) < 1e-12


def test_synthetic_targets_follow_the_paper_formula():
    data = ds.synthetic(num_tasks=3, correlation=0.2, num_examples=4000, num_features=20, seed=7)
    params = ds.synthetic_params(3, 0.2, 20, seed=7)
    x = data.inputs.double().numpy()
    w, a, b = (t.numpy() for t in params)
    z = x @ w.T  # (N, T)
    clean = z + np.sin(a[None, None, :] * z[..., None] + b[None, None, :]).sum(-1)
    y = np.stack([data.targets[f"y{t}"].double().numpy() for t in (1, 2, 3)], axis=1)
    residual = y - clean
    assert abs(residual.mean()) < 0.01 and abs(residual.std() - 0.1) < 0.005  # noise N(0, 0.1²)
    assert abs(x.mean()) < 0.01 and abs(x.std() - 1) < 0.01
    assert len(params.alphas) == 10 and data.num_features == 20
    assert [t.kind for t in data.tasks] == ["regression"] * 3


def test_synthetic_label_correlation_grows_with_the_cosine_and_follows_the_seed():
    pearson = []
    for correlation in (0.0, 0.5, 0.9):
        data = ds.synthetic(correlation=correlation, num_examples=3000, num_features=20, seed=0)
        pearson.append(float(torch.corrcoef(torch.stack(list(data.targets.values())))[0, 1]))
    assert abs(pearson[0]) < 0.1 and pearson[0] < pearson[1] < pearson[2]
    a, b = ds.synthetic(num_examples=50, seed=4), ds.synthetic(num_examples=50, seed=4)
    c = ds.synthetic(num_examples=50, seed=5)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets["y2"], b.targets["y2"])
    assert not torch.equal(a.inputs, c.inputs)
    assert torch.equal(ds.load("synthetic", num_examples=50, seed=4).targets["y1"], a.targets["y1"])
    with pytest.raises(ValueError, match=r"`correlation` must be a cosine in \[-0.3333, 1\]"):
        ds.synthetic(num_tasks=4, correlation=-0.5)


def test_synthetic_presets_are_the_papers_parameter_matched_models_on_the_same_data():
    """Ma et al. section 5.1: 8 experts of 16, towers of 8, so 100·16·8 + 16·8·2 = 13056
    expert and tower weights, and a Shared-Bottom of 13056 / (100 + 8·2) ≈ 113 units."""
    presets = fm.experiment.PRESETS
    shared, mmoe = presets["synthetic-shared"], presets["synthetic-mmoe"]
    for key in ("data", "data_options", "head_hidden", "lr", "steps", "batch_size"):
        assert shared[key] == mmoe[key], key  # same data, towers and training budget
    assert (shared["arch"], mmoe["arch"]) == ("hard_sharing", "mmoe")
    d = inspect.signature(ds.synthetic).parameters["num_features"].default
    experts, width, tower = mmoe["experts"], mmoe["hidden"], mmoe["head_hidden"]
    assert (d, experts, width, tower) == (100, 8, (16,), (8,))
    paper_count = d * width[0] * experts + width[0] * tower[0] * 2
    assert paper_count == 13056 and shared["hidden"] == (round(paper_count / (d + 2 * tower[0])),)


# --- toy problem --------------------------------------------------------------------------


def reference_toy(x1, x2, scale=1.0):
    """The toy losses transcribed from toy.py of github.com/Cranial-XIX/CAGrad, in float64."""
    f1 = math.log(max(abs(0.5 * (-x1 - 7) - math.tanh(-x2)), 0.000005)) + 6
    f2 = math.log(max(abs(0.5 * (-x1 + 3) + math.tanh(-x2) + 2), 0.000005)) + 6
    c1 = max(math.tanh(x2 * 0.5), 0)
    f1_sq = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    f2_sq = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    c2 = max(math.tanh(-x2 * 0.5), 0)
    return [scale * (f1 * c1 + f1_sq * c2), f2 * c1 + f2_sq * c2]


POINTS = [(-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0), (0.0, 0.0), (3.3, -8.3552), (-1.2, 0.4)]


def test_toy_losses_match_the_reference_and_differentiate_under_vmap():
    x = torch.tensor(POINTS, dtype=torch.float64)
    for scale in (1.0, 0.1):
        expected = torch.tensor([reference_toy(*p, scale=scale) for p in POINTS], dtype=x.dtype)
        assert torch.allclose(ds.toy_losses(x, scale=scale), expected, rtol=0, atol=1e-12)
    jacobians = torch.func.vmap(torch.func.jacrev(ds.toy_losses))(x)  # (points, tasks, 2)
    assert jacobians.shape == (6, 2, 2)
    h = 1e-6
    for point, jacobian in zip(POINTS[:3], jacobians, strict=False):
        for j in range(2):
            up, down = list(point), list(point)
            up[j] += h
            down[j] -= h
            slope = (np.array(reference_toy(*up)) - np.array(reference_toy(*down))) / (2 * h)
            assert np.allclose(jacobian[:, j].numpy(), slope, rtol=1e-5, atol=1e-6)
    assert set(ds.TOY_STARTS) == {"cagrad", "nash_mtl", "famo"}
    assert ds.TOY_STARTS["cagrad"] == ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0))


def test_toy_trajectory_with_mean_decreases_the_summed_loss():
    start = ds.TOY_STARTS["cagrad"][0]
    run = ds.toy_trajectory("mean", start, steps=150, lr=0.1)
    assert run["trajectory"].shape == (151, 2) and run["losses"].shape == (151, 2)
    assert torch.equal(run["trajectory"][0], torch.tensor(start))
    assert torch.allclose(run["losses"], ds.toy_losses(run["trajectory"]))
    total = run["losses"].sum(dim=1)
    assert total[-1] < total[0] - 10
    sgd = ds.toy_trajectory(fm.aggregators.mean(), start, steps=20, lr=0.5, optimizer="sgd")
    assert sgd["losses"][-1].sum() < sgd["losses"][0].sum()
    key = fm.random.key(3)
    a = ds.toy_trajectory("pcgrad", (9.0, 9.0), steps=20, lr=0.1, key=key)
    b = ds.toy_trajectory("pcgrad", (9.0, 9.0), steps=20, lr=0.1, key=key)
    assert torch.equal(a["trajectory"], b["trajectory"])
    with pytest.raises(ValueError, match="`optimizer` must be one of"):
        ds.toy_trajectory("mean", start, steps=1, optimizer="lbfgs")


TOY_METHODS = ["mean", "mgda", "pcgrad", "cagrad", "upgrad", "nash_mtl", "graddrop", "gradvac"]


def test_toy_trajectories_equal_one_solo_run_per_method_and_start():
    """The batch (vmap over starts, one optimizer update for all methods) changes nothing:
    run (m, s) is bitwise the solo run of method m from start s keyed by split(key, S)[s],
    stateful (GradVac) and randomised (GradDrop) methods included."""
    starts = torch.tensor(ds.TOY_STARTS["cagrad"], dtype=torch.float64)
    key = fm.random.key(1)
    runs = ds.toy_trajectories(TOY_METHODS, starts, steps=30, lr=0.05, key=key, record_every=7)
    assert runs["trajectory"].shape == (8, 3, 6, 2)
    assert runs["steps"].tolist() == [0, 7, 14, 21, 28, 30]
    for m, method in enumerate(TOY_METHODS):
        for s, start_key in enumerate(fm.random.split(key, 3)):
            solo = ds.toy_trajectory(method, starts[s], steps=30, lr=0.05, key=start_key)
            assert torch.equal(runs["trajectory"][m, s], solo["trajectory"][runs["steps"]])
            assert torch.equal(runs["losses"][m, s], solo["losses"][runs["steps"]])
    with pytest.raises(ValueError, match="`record_every` must be an integer ≥ 1"):
        ds.toy_trajectories(["mean"], starts, steps=3, record_every=0)
    with pytest.raises(ValueError, match="`starts` must be points of shape"):
        ds.toy_trajectories(["mean"], starts[0], steps=3)


def test_the_compiled_toy_step_equals_the_eager_one():
    """torch.compile(fullgraph=True) traces every aggregator's two-task path (no graph break:
    fullgraph would raise) and gives the eager numbers."""
    methods = ["mgda", "pcgrad", "cagrad", "upgrad", "nash_mtl"]
    starts = torch.tensor(ds.TOY_STARTS["nash_mtl"], dtype=torch.float64)
    eager = ds.toy_trajectories(methods, starts, steps=12, lr=0.05, scale=0.1)
    compiled = ds.toy_trajectories(methods, starts, steps=12, lr=0.05, scale=0.1, compile=True)
    torch.testing.assert_close(compiled["trajectory"], eager["trajectory"], rtol=0, atol=1e-12)


# --- files --------------------------------------------------------------------------------


def table(n=30, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(size=n),
        "b": rng.normal(size=n),
        "label": rng.integers(0, 4, size=n).astype(np.float64),
        "v1": rng.normal(size=n),
        "v2": rng.normal(size=n),
    }


def check_round_trip(data, columns):
    assert [t.name for t in data.tasks] == ["label", "value"]
    assert np.allclose(data.inputs.numpy(), np.stack([columns["a"], columns["b"]], 1), atol=1e-6)
    assert data.inputs.dtype == torch.float32 and data.targets["label"].dtype == torch.int64
    assert np.array_equal(data.targets["label"].numpy(), columns["label"].astype(np.int64))
    value = np.stack([columns["v1"], columns["v2"]], 1)
    assert np.allclose(data.targets["value"].numpy(), value, atol=1e-6)
    assert data.tasks[0].output_size == int(columns["label"].max()) + 1
    assert data.tasks[1].output_size == 2 and data.tasks[1].kind == "regression"


TARGETS = {"label": "classification", "value": "regression:v1,v2"}


def test_csv_npz_and_pt_files_round_trip(tmp_path):
    columns = table()
    names = list(columns)
    np.savetxt(
        tmp_path / "t.csv",
        np.stack([columns[k] for k in names], 1),
        delimiter=",",
        header=",".join(names),
        comments="",
        fmt="%.17g",
    )
    np.savez(tmp_path / "t.npz", **columns)
    torch.save({k: torch.from_numpy(v) for k, v in columns.items()}, tmp_path / "t.pt")
    for suffix in ("csv", "npz", "pt"):
        data = ds.from_file(tmp_path / f"t.{suffix}", targets=TARGETS)
        check_round_trip(data, columns)
        assert data.name == "t"
    loaded = ds.load(str(tmp_path / "t.csv"), targets=TARGETS)
    check_round_trip(loaded, columns)
    only_b = ds.from_file(tmp_path / "t.npz", inputs=["b"], targets={"v1": "regression"})
    assert only_b.num_features == 1 and only_b.targets["v1"].shape == (30,)
    fixed = ds.from_file(tmp_path / "t.pt", targets={"label": "classification(10)"})
    assert fixed.tasks[0].output_size == 10 and fixed.num_features == 4  # a, b, v1, v2
    parts = ds.load_splits(tmp_path / "t.csv", seed=1, targets=TARGETS)
    assert [len(p) for p in parts] == [24, 3, 3]


def test_missing_target_cells_become_masked_labels(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("x,c,r\n0.5,1,2.0\n1.5,,\n2.5,2,3.0\n")
    data = ds.from_file(path, targets={"c": "classification", "r": "regression"})
    assert data.targets["c"].tolist() == [1, -1, 2] and data.tasks[0].mask_value == -1
    assert math.isnan(data.tasks[1].mask_value) and math.isnan(data.targets["r"][1])
    outputs = {"c": torch.zeros(3, 3), "r": torch.tensor([2.0, 100.0, 3.0])}
    losses = fm.mtl.task_losses(data.tasks, outputs, data.targets)
    assert float(losses[1]) == 0.0  # the missing row is masked out


def test_from_torch_dataset_stacks_items():
    class Pairs(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return torch.full((2, 3), float(i)), {"c": i % 3, "r": torch.tensor([i / 2])}

    tasks = [Task("c", "classification", 3), Task("r", "regression")]
    data = ds.from_torch_dataset(Pairs(), tasks)
    assert data.inputs.shape == (5, 6) and torch.equal(data.inputs[:, 0], torch.arange(5.0))
    assert data.targets["c"].tolist() == [0, 1, 2, 0, 1]
    assert data.targets["r"].shape == (5,) and data.targets["r"][3] == 1.5


# --- validation errors --------------------------------------------------------------------


def regression_set(x, y, **kwargs):
    tasks = (Task("y", "regression", **kwargs),)
    return ds.MultiTaskDataset("d", x, {"y": y}, tasks).validate()


def test_bad_inputs_and_targets_are_named_in_one_line(tmp_path):
    x = torch.zeros(4, 3)
    x[0, 1] = math.nan
    x[2, 1] = math.nan
    x[3, 2] = math.inf
    expected = r"found 2 NaN and 1 inf values in feature columns \[1, 2\]"
    with pytest.raises(ValueError, match=expected):
        regression_set(x, torch.zeros(4))
    expected = r"targets must be finite; found non-finite values 1 at rows \[2\]"
    with pytest.raises(ValueError, match=expected):
        regression_set(torch.zeros(4, 3), torch.tensor([0.0, 1.0, math.inf, 2.0]))
    masked = regression_set(torch.zeros(2, 1), torch.tensor([math.nan, 1.0]), mask_value=math.nan)
    assert len(masked) == 2
    with pytest.raises(ValueError, match=r"label 5 at row 1 is outside the allowed range \[0, 3\)"):
        tasks = (Task("c", "classification", 3),)
        ds.MultiTaskDataset("d", torch.zeros(2, 1), {"c": torch.tensor([0, 5])}, tasks).validate()
    with pytest.raises(ValueError, match=r"targets must have shape \(4,\) to match 4 inputs"):
        regression_set(torch.zeros(4, 3), torch.zeros(5))
    with pytest.raises(ValueError, match=r"missing \['y'\], extra \['z'\]"):
        ds.MultiTaskDataset(
            "d", torch.zeros(2, 1), {"z": torch.zeros(2)}, (Task("y", "regression"),)
        ).validate()
    with pytest.raises(ValueError, match="at least one example; got N = 0"):
        regression_set(torch.zeros(0, 3), torch.zeros(0))
    with pytest.raises(ValueError, match="`inputs` must be float32; got torch.float64"):
        regression_set(torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2))


def test_bad_files_raise_clear_errors(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,y\n1,2,0\n3,abc,1\n")
    with pytest.raises(ValueError, match=r"line 3, column 'b': expected a number; got 'abc'"):
        ds.from_file(path, targets={"y": "classification"})
    path.write_text("a,b,y\n1,2,0\n3,4,7\n")
    with pytest.raises(ValueError, match=r"no column 'label'; available columns: a, b, y"):
        ds.from_file(path, targets={"label": "classification"})
    with pytest.raises(ValueError, match=r"label 7 at row 1 is outside the allowed range \[0, 3\)"):
        ds.from_file(path, targets={"y": "classification(3)"})
    path.write_text("a,y\n1,0.5\n")
    with pytest.raises(ValueError, match="class labels must be integers; found 0.5"):
        ds.from_file(path, targets={"y": "classification"})
    with pytest.raises(ValueError, match="spec must be 'kind'"):
        ds.from_file(path, targets={"y": "ordinal"})
    np.savez(tmp_path / "short.npz", x=np.zeros((5, 2)), y=np.zeros(4))
    with pytest.raises(ValueError, match="has 4 rows but the inputs have 5"):
        ds.from_file(tmp_path / "short.npz", targets={"y": "regression"})
    with pytest.raises(ValueError, match=r"unknown file type '.txt'; expected one of"):
        ds.from_file(tmp_path / "data.txt", targets={"y": "regression"})
    with pytest.raises(ValueError, match="no such file"):
        ds.from_file(tmp_path / "absent.csv", targets={"y": "regression"})
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="expected a dict of column name -> Tensor"):
        ds.from_file(tmp_path / "list.pt", targets={"y": "regression"})
    with pytest.raises(ValueError, match="is both an input and a target"):
        ds.from_file(path, inputs=["a", "y"], targets={"y": "regression"})
    with pytest.raises(ValueError, match=r"takes targets=\{task: spec\}"):
        ds.load(str(path))
    with pytest.raises(ValueError, match=r"built-ins \(multidigits, synthetic\) or a path to a"):
        ds.load("cifar")


# --- split, subset, listing ---------------------------------------------------------------


def test_split_is_disjoint_covering_and_seeded():
    ids = torch.arange(25, dtype=torch.float32)
    data = regression_set(ids[:, None], ids)
    parts = ds.split(data, (0.6, 0.2, 0.2), seed=0)
    assert [len(p) for p in parts] == [15, 5, 5]
    assert [p.name for p in parts] == ["d/train", "d/val", "d/test"]
    seen = torch.cat([p.targets["y"] for p in parts])
    assert torch.equal(seen.sort().values, ids)
    assert all(torch.equal(p.inputs[:, 0], p.targets["y"]) for p in parts)  # rows stay aligned
    again = ds.split(data, (0.6, 0.2, 0.2), seed=0)
    other = ds.split(data, (0.6, 0.2, 0.2), seed=1)
    for part, repeat in zip(parts, again, strict=True):
        assert torch.equal(part.targets["y"], repeat.targets["y"])
    assert not torch.equal(parts[0].targets["y"], other[0].targets["y"])
    hundred = regression_set(torch.zeros(100, 1), torch.zeros(100))
    assert [len(p) for p in ds.split(hundred)] == [80, 10, 10]  # default (0.8, 0.1, 0.1)
    with pytest.raises(ValueError, match="gives an empty part"):
        ds.split(regression_set(torch.zeros(3, 1), torch.zeros(3)))
    sub = data.subset([3, 1])
    assert sub.targets["y"].tolist() == [3.0, 1.0] and sub.data[0].shape == (2, 1)


def test_names_and_descriptions():
    assert ds.NAMES == ("multidigits", "synthetic")
    for name in ds.NAMES:
        line = ds.describe(name)
        assert "\n" not in line and "https://" in line
