"""TensorBoard scalars of the run directory's records (optional: the tensorboard extra)."""

from __future__ import annotations

from typing import Any

from funcmtl._json import decode, encode, scalars

__all__ = ["log", "writer_class"]


def writer_class() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``, or a clear error without the package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError(
            "TensorBoard logging needs the tensorboard package: pip install 'funcmtl[tensorboard]'."
        ) from None
    return SummaryWriter


def log(writer: Any, record: dict, step: int, split: str) -> None:
    """Every number of ``record`` as a scalar ``split[/member_K]/path/of/it`` at ``step``."""
    member = record.get("member")
    prefix = split if member is None else f"{split}/member_{int(member)}"
    for name, value in scalars(decode(encode(record, "record"))):
        if name not in ("step", "split", "member"):
            writer.add_scalar(f"{prefix}/{name}", value, step)
    writer.flush()
