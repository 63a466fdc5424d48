"""Clip-level video networks: one module per family, built by name.

:mod:`.c3d` (``c3d``, ``c3d_dual``, ``c3d_2layer``), :mod:`.tsm` (``tsm_resnet18``,
``tsm_resnet50``), :mod:`.torchvision_video` (``r3d_18``, ``mc3_18``, ``r2plus1d_18``, ``s3d``,
``mvit_v2_s``, ``swin3d_t``), :mod:`.transformers_video` (``timesformer``, ``vivit``,
``vivit_joint``) and :mod:`.cnn_lstm` (``vgg16_lstm``); :func:`.factory.build_video_model` builds
any of them by name, :class:`.classifier.VideoClassifier` adds the uint8 clip input pipeline, and
:mod:`.settings` (no torch import, so Snakemake can read it) holds each model's defaults and the
config resolution. This package module imports nothing, so that stays cheap.
"""
