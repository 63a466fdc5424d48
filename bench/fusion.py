"""Late-fusion weight search: seconds to score every weight vector of the simplex grid.

Random class probabilities for M models on N validation clips (N = 383, AFEW's validation
split, by default); each row is one :func:`avfer.fusion.search.search_weights` call (all grid
points scored with chunked matrix products), the best of ``--repeat`` runs. Target: 6 models
at step 0.05 (53130 weight vectors) in seconds. Also times one ``class_weight_search``, the
5-fold cross-validation of ``weight_search`` for 6 models at step 0.05, and the nested 5x5-fold
estimate of ``auto`` over every method (what ``fuse_late`` reports as ``cv``).

    python bench/fusion.py [--clips 383] [--repeat 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=383)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads (default: all)")
    parser.add_argument("--chunk", type=int, default=4096)
    args = parser.parse_args()
    if args.threads:  # before numpy's BLAS starts its thread pool
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)

    from avfer.fusion.late import METHODS, cross_validate, nested_cross_validate
    from avfer.fusion.search import search_class_weights, search_weights, simplex_size

    rng = np.random.default_rng(0)
    y = rng.integers(0, 7, args.clips)
    print(f"weight search on {args.clips} clips x 7 classes (best of {args.repeat}, chunk {args.chunk})")
    print(f"{'models':>6} {'step':>6} {'points':>9} {'seconds':>8} {'points/s':>10}")
    for models, step in [
        (2, 0.05),
        (3, 0.05),
        (4, 0.05),
        (5, 0.05),
        (6, 0.1),
        (6, 0.05),
        (7, 0.05),
        (8, 0.1),
    ]:
        divisions = round(1 / step)
        scores = rng.dirichlet(np.ones(7), size=(models, args.clips))
        seconds = _best_of(
            args.repeat, lambda s=scores, d=divisions: search_weights(s, y, divisions=d, chunk=args.chunk)
        )
        points = simplex_size(models, divisions)
        print(f"{models:>6} {step:>6.2f} {points:>9} {seconds:>8.3f} {points / seconds:>10.0f}")

    scores = rng.dirichlet(np.ones(7), size=(6, args.clips))
    init = search_weights(scores, y, divisions=20).weights
    seconds = _best_of(1, lambda: search_class_weights(scores, y, init, divisions=20, chunk=args.chunk))
    print(f"class_weight_search, 6 models, step 0.05, 2 rounds x 7 classes: {seconds:.2f} s")
    seconds = _best_of(1, lambda: cross_validate("weight_search", scores, y, folds=5, divisions=20))
    print(f"5-fold CV of weight_search, 6 models, step 0.05: {seconds:.2f} s")
    for step in (0.1, 0.05):
        kw = {"folds": 5, "divisions": round(1 / step), "metric": "accuracy", "chunk": args.chunk}
        seconds = _best_of(1, lambda kw=kw: nested_cross_validate(list(METHODS), scores, y, **kw))
        print(f"nested 5x5-fold CV of auto ({len(METHODS)} methods), 6 models, step {step}: {seconds:.2f} s")


if __name__ == "__main__":
    main()
