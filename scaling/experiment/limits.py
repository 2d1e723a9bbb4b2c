"""The checks of a parsed config that look at it whole: learning rates within float32, and a first round and a
largest member that fit in memory."""

from __future__ import annotations

import numpy as np

from scaling.choices import Data
from scaling.engine.population import member_bytes
from scaling.errors import UserError
from scaling.experiment.schema import MAX_MEMBERS, Reader

# Learning rates are float32 on the device. Adam's first step moves every weight by about lr, so a rate past
# float32's largest number (with the search's x 3 extensions) makes every weight infinite at once, and one
# below its smallest is zero: neither trains anything.
_F32 = np.finfo(np.float32)


def check_lrs(cfg, r: Reader) -> None:  # cfg: the parsed scaling.experiment.config.Config
    lo, hi = cfg.lr_range()
    if hi > float(_F32.max) or lo < float(_F32.tiny):
        raise r["train"].fail("lrs", f"learning rates from {lo:.3g} to {hi:.3g} (the grid and the search's "
                                     f"extensions) must lie within float32's normal range, {float(_F32.tiny):.3g} "
                                     f"to {float(_F32.max):.3g}: Adam's first step moves each weight by about lr")


def check_size(cfg, path: str) -> None:
    """Refuse a config whose first round, or whose largest member, would not fit in memory."""
    points = sum(len(cfg.depths_at(n)) * len(cfg.widths_at(n))
                 + len(cfg.min_depth_widths_at(n)) * cfg.min_depth_max_at(n) for n, _ in cfg.tasks())
    members = points * len(cfg.model.inits) * len(cfg.train.lrs) * cfg.search.seeds
    if members > MAX_MEMBERS:
        raise UserError(f"{path}: [search] seeds", f"the first round would plan {members:,} members (points x "
                                                   f"inits x lrs x seeds), over the limit of {MAX_MEMBERS:,}")
    budget = cfg.run.bucket_mib * 2**20
    for n in cfg.task.ns:
        rows = min(2**n, cfg.train.max_batch_rows) if cfg.task.data == Data.TABLE else cfg.train.batch_size
        eval_rows = 2**n if cfg.task.data == Data.TABLE else cfg.task.eval_samples
        shapes = [(max(cfg.depths_at(n)), max(cfg.widths_at(n)), "[model] widths")]
        if cfg.min_depth_widths_at(n):
            shapes.append((cfg.min_depth_max_at(n), max(cfg.min_depth_widths_at(n)), "[search] min_depth_widths"))
        for depth, width, key in shapes:
            need = member_bytes(n, depth, width, rows, eval_rows)
            if need > budget:
                raise UserError(f"{path}: {key}", f"one member of width {width} and depth {depth} at n = {n} "
                                                  f"needs about {need / 2**20:,.0f} MiB, over run.bucket_mib = "
                                                  f"{cfg.run.bucket_mib}; use smaller widths or raise bucket_mib")
