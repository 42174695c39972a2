"""funcmtl.checkpoint: exact round trips, atomic writes, safe loading, structure checks."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

from funcmtl import checkpoint


class Inner(NamedTuple):
    mu: dict
    count: torch.Tensor


class State(NamedTuple):
    params: dict
    opt_state: tuple
    step: torch.Tensor
    epoch: int
    lr: float
    done: bool
    note: None


def make_state(seed: int = 0, *, width: int = 3) -> State:
    g = torch.Generator().manual_seed(seed)
    params = {
        "w": torch.randn(width, 4, generator=g),
        "b": torch.randn(4, generator=g, dtype=torch.float64),
        "mask": torch.rand(5, generator=g) > 0.5,
        "idx": torch.randint(0, 100, (2, 3), generator=g),
    }
    params["w"][0, 0] = float("nan")  # NaN payloads must survive too
    inner = Inner(mu={k: v.clone() for k, v in params.items()}, count=torch.tensor(7))
    return State(
        params=params,
        opt_state=(inner, [torch.tensor(1.5, dtype=torch.float64)]),
        step=torch.tensor(42, dtype=torch.int64),
        epoch=3,
        lr=1e-3,
        done=False,
        note=None,
    )


def bits(x: torch.Tensor) -> torch.Tensor:
    """A tensor's raw bytes, so NaNs compare equal bit for bit."""
    return x.contiguous().view(torch.uint8) if x.dim() else x.reshape(1).view(torch.uint8)


def files_in(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_round_trip_is_bit_identical(tmp_path):
    state = make_state(0)
    path = tmp_path / checkpoint.CHECKPOINT
    checkpoint.save(path, state, metadata={"epoch": 3, "config": {"lr": 1e-3, "tasks": ("a",)}})
    loaded, metadata = checkpoint.load(path, like=make_state(1))

    assert isinstance(loaded, State) and isinstance(loaded.opt_state[0], Inner)
    assert metadata == {"epoch": 3, "config": {"lr": 1e-3, "tasks": ["a"]}}
    assert (loaded.epoch, loaded.lr, loaded.done, loaded.note) == (3, 1e-3, False, None)
    flat_saved = torch.utils._pytree.tree_leaves_with_path(state)
    flat_loaded = torch.utils._pytree.tree_leaves_with_path(loaded)
    assert [p for p, _ in flat_saved] == [p for p, _ in flat_loaded]
    tensors = 0
    for (_, a), (_, b) in zip(flat_saved, flat_loaded, strict=True):
        if isinstance(a, torch.Tensor):
            tensors += 1
            assert b.dtype == a.dtype and b.shape == a.shape and b.device == a.device
            assert torch.equal(bits(a), bits(b))
    assert tensors == 11
    assert loaded.step.dim() == 0 and loaded.step.item() == 42


def test_save_stores_only_a_views_elements(tmp_path):
    big = torch.arange(1_000_000, dtype=torch.float32)
    view = {"x": big[10:20]}
    checkpoint.save(tmp_path / "c.pt", view)
    assert (tmp_path / "c.pt").stat().st_size < 20_000
    loaded, _ = checkpoint.load(tmp_path / "c.pt", like={"x": torch.zeros(10)})
    assert torch.equal(loaded["x"], big[10:20])


def test_load_follows_like_requires_grad(tmp_path):
    checkpoint.save(tmp_path / "c.pt", {"w": torch.ones(2)})
    like = {"w": torch.zeros(2, requires_grad=True)}
    loaded, metadata = checkpoint.load(tmp_path / "c.pt", like=like)
    assert loaded["w"].requires_grad and loaded["w"].is_leaf and metadata == {}


def test_file_holds_only_plain_data(tmp_path):
    checkpoint.save(tmp_path / "c.pt", make_state(), metadata={"k": 1})
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    assert payload["format"] == "funcmtl.checkpoint"
    assert payload["structure"][0] == {
        "path": ".params['w']",
        "kind": "tensor",
        "shape": [3, 4],
        "dtype": "torch.float32",
    }


@pytest.mark.parametrize("failing", ["save", "replace"])
def test_failed_save_leaves_previous_checkpoint_untouched(tmp_path, monkeypatch, failing):
    path = tmp_path / checkpoint.CHECKPOINT
    checkpoint.save(path, make_state(0))
    before = files_in(tmp_path)

    def broken_save(obj, file, *args, **kwargs):
        file.write(b"half a checkpoint")
        raise RuntimeError("disk full")

    def broken_replace(src, dst):
        raise OSError("rename failed")

    if failing == "save":
        monkeypatch.setattr(torch, "save", broken_save)
    else:
        monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises((RuntimeError, OSError)):
        checkpoint.save(path, make_state(1))
    monkeypatch.undo()

    assert files_in(tmp_path) == before  # same bytes, and no temporary file left behind
    loaded, _ = checkpoint.load(path, like=make_state(1))
    assert torch.equal(loaded.params["b"], make_state(0).params["b"])


def test_save_replaces_an_existing_checkpoint(tmp_path):
    path = tmp_path / checkpoint.CHECKPOINT
    checkpoint.save(path, {"x": torch.zeros(2)})
    checkpoint.save(path, {"x": torch.ones(2)})
    assert [p.name for p in tmp_path.iterdir()] == [checkpoint.CHECKPOINT]
    assert torch.equal(checkpoint.load(path, like={"x": torch.zeros(2)})[0]["x"], torch.ones(2))


class WritesMarker:
    """Unpickling this runs ``open(marker, "w")``: a stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_the_malicious_payload_is_live_under_plain_pickle(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(WritesMarker(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_load_refuses_pickled_code_without_running_it(tmp_path, writer):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    payload = {"format": "funcmtl.checkpoint", "version": 1, "leaves": [WritesMarker(marker)]}
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(ValueError, match="holds pickled|holds a pickled") as error:
        checkpoint.load(path, like={"x": torch.zeros(1)})
    assert "\n" not in str(error.value)
    assert not marker.exists()


def test_load_rejects_truncated_and_foreign_files(tmp_path):
    like = make_state()
    path = tmp_path / "c.pt"
    checkpoint.save(path, like)
    data = path.read_bytes()
    for name, content in [("cut.pt", data[: len(data) // 2]), ("empty.pt", b""), ("x.pt", b"x")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match="not a readable funcmtl checkpoint: it is corrupt"):
            checkpoint.load(tmp_path / name, like=like)
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a funcmtl checkpoint"):
        checkpoint.load(tmp_path / "other.pt", like=like)
    with pytest.raises(ValueError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "missing.pt", like=like)


def test_load_rejects_a_file_inconsistent_with_its_own_record(tmp_path):
    checkpoint.save(tmp_path / "c.pt", {"x": torch.zeros(2)})
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    payload["leaves"] = [torch.zeros(3)]
    torch.save(payload, tmp_path / "c.pt")
    with pytest.raises(ValueError, match="is corrupt"):
        checkpoint.load(tmp_path / "c.pt", like={"x": torch.zeros(2)})


def test_structure_mismatch_names_the_leaf(tmp_path):
    path = tmp_path / "c.pt"
    checkpoint.save(path, make_state())
    wider = make_state(width=5)
    with pytest.raises(
        ValueError,
        match=r"leaf \.params\['w'\]: expected a float32 tensor of "
        r"shape \(5, 4\), found a float32 tensor of shape \(3, 4\)",
    ):
        checkpoint.load(path, like=wider)

    recast = make_state()
    recast.params["b"] = recast.params["b"].float()
    with pytest.raises(
        ValueError,
        match=r"leaf \.params\['b'\]: expected a float32 .* found a "
        r"float64",
    ):
        checkpoint.load(path, like=recast)

    fewer = make_state()
    del fewer.params["idx"]
    with pytest.raises(ValueError, match=r"different configuration") as error:
        checkpoint.load(path, like=fewer)
    assert "['idx']" in str(error.value)

    renamed = make_state()
    renamed.params["bias"] = renamed.params.pop("b")
    with pytest.raises(ValueError, match=r"leaf \.params\['mask'\]"):
        checkpoint.load(path, like=renamed)

    wrong_kind = make_state()._replace(epoch=3.0)
    with pytest.raises(ValueError, match=r"leaf \.epoch: expected a float leaf, found an int"):
        checkpoint.load(path, like=wrong_kind)


def test_bad_leaves_and_metadata_are_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match=r"leaf \['name'\] is a str"):
        checkpoint.save(tmp_path / "c.pt", {"name": "x"})
    with pytest.raises(ValueError, match="metadata` must be JSON-able"):
        checkpoint.save(tmp_path / "c.pt", {"x": torch.zeros(1)}, metadata={"t": torch.zeros(1)})
    with pytest.raises(ValueError, match="does not exist"):
        checkpoint.save(tmp_path / "nope" / "c.pt", {"x": torch.zeros(1)})
    assert list(tmp_path.iterdir()) == []


def test_load_places_each_tensor_on_its_like_leafs_device(tmp_path):
    # "meta" stands in for an accelerator: the tests run on CPU only.
    checkpoint.save(tmp_path / "c.pt", {"w": torch.ones(2), "b": torch.zeros(3)})
    like = {"w": torch.zeros(2, device="meta"), "b": torch.zeros(3)}
    loaded, _ = checkpoint.load(tmp_path / "c.pt", like=like)
    assert loaded["w"].device.type == "meta" and loaded["b"].device.type == "cpu"
    assert torch.equal(loaded["b"], torch.zeros(3))


def test_a_flipped_byte_anywhere_is_refused_or_harmless(tmp_path):
    path = tmp_path / checkpoint.CHECKPOINT
    state = make_state()
    checkpoint.save(path, state, metadata={"step": 3})
    data = path.read_bytes()
    target = bits(state.params["b"]).numpy().tobytes()
    inside = data.index(target) + 5  # a byte of a tensor's stored elements
    refused = 0
    for position in sorted({inside, *range(0, len(data), 61)}):
        flipped = bytearray(data)
        flipped[position] ^= 0x10
        path.write_bytes(bytes(flipped))
        try:
            loaded, meta = checkpoint.load(path, like=state)
        except ValueError as error:
            assert "\n" not in str(error)
            refused += 1
            if position == inside:
                assert str(error).startswith(f"{path} is corrupt (checksum mismatch)")
            continue
        # Accepted only where the byte is not data (zip padding, say): nothing changed.
        assert position != inside and meta == {"step": 3}
        for x, y in zip(torch.utils._pytree.tree_leaves(loaded),
                        torch.utils._pytree.tree_leaves(state), strict=True):
            assert torch.equal(bits(x), bits(y)) if isinstance(x, torch.Tensor) else x == y
    assert refused > 10


def test_checkpoints_of_version_1_without_a_checksum_still_load(tmp_path):
    path = tmp_path / "old.pt"
    state = {"x": torch.arange(3.0), "n": 4}
    checkpoint.save(path, state, metadata={"step": 1})
    payload = torch.load(path, weights_only=True)
    old = {key: payload[key] for key in ("format", "structure", "leaves", "metadata")}
    torch.save({**old, "version": 1}, path)
    loaded, meta = checkpoint.load(path, like={"x": torch.zeros(3), "n": 0})
    assert torch.equal(loaded["x"], torch.arange(3.0)) and loaded["n"] == 4 and meta == {"step": 1}
