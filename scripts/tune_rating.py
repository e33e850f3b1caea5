"""Choose biased MF's settings (params.yaml `rating`) on the validation split: RMSE of every validation sample.

    python scripts/tune_rating.py [--params params.yaml] [--root .]

Needs ingest and samples to have run under --root. Fits on the training period only, scores the whole validation
split (never test) and prints one line per setting, best last.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import polars as pl

from explainrec_core.baselines.base import TrainingData
from explainrec_core.config import load_config
from explainrec_core.rating.biased_mf import BiasedMF, BiasedMFConfig
from explainrec_core.steps.data_steps import read_processed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--root", default=".")
    parser.add_argument("--dims", default="0,8,16,32")
    parser.add_argument("--regs", default="3,10,30")
    parser.add_argument("--bias-regs", default="2,5,15")
    args = parser.parse_args()
    cfg, root = load_config(args.params), Path(args.root)
    samples = read_processed(cfg, root, "samples")
    data = TrainingData.from_tables(samples, read_processed(cfg, root, "interactions"),
                                    read_processed(cfg, root, "items"), cfg.samples.like_threshold)
    valid = samples.filter(pl.col("split") == "valid")
    truth = valid["rating"].to_numpy()
    results = []
    for dim, reg, reg_bias in itertools.product(*(map(float, a.split(",")) for a in
                                                  (args.dims, args.regs, args.bias_regs))):
        if dim == 0 and reg != float(args.regs.split(",")[0]):
            continue  # reg only acts on factors
        start = time.perf_counter()
        model = BiasedMF(BiasedMFConfig(dim=int(dim), reg=reg, reg_bias=reg_bias, sweeps=cfg.rating.sweeps))
        model.fit(data.interactions, seed=cfg.rating.seed)
        error = model.predict(valid) - truth
        results.append((float(np.sqrt(np.mean(error ** 2))), float(np.abs(error).mean()), int(dim), reg, reg_bias))
        print(f"dim {int(dim):3d} reg {reg:5.1f} reg_bias {reg_bias:5.1f}: valid RMSE {results[-1][0]:.4f} "
              f"MAE {results[-1][1]:.4f} ({time.perf_counter() - start:.1f} s)", flush=True)
    best = min(results)
    print(f"best on valid (n = {valid.height}): dim {best[2]} reg {best[3]} reg_bias {best[4]}: RMSE {best[0]:.4f} "
          f"MAE {best[1]:.4f}")


if __name__ == "__main__":
    main()
