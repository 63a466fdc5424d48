"""Datasets and loaders over the HDF5 caches (static faces, frames, per-clip sequences)."""
