"""Snakemake script: the sample sheet → one protocol run's split assignment (train/dev/val/test)."""

from avfer.datasets import read_sample_sheet
from avfer.datasets.splits import make_splits, split_counts, write_splits
from avfer.workflow import logged

with logged(snakemake.log[0], "assign_splits") as log:
    p = snakemake.params
    splits = make_splits(
        read_sample_sheet(snakemake.input.sheet),
        dev_fraction=p.dev_fraction,
        seed=p.seed,
        folds=p.folds,
        fold=p.fold,
        fold_val=p.fold_val,
        fold_val_fraction=p.fold_val_fraction,
    )
    write_splits(splits, snakemake.output.splits)
    log.info("%s: %s", snakemake.output.splits, split_counts(splits))
