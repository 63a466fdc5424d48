# Packaging: results/bundle/ is the trained run as one self-describing bundle for
# `avfer predict --model results/bundle` (face CNNs, the late fusion's models and weights, and the
# preprocessing spec: face stage settings, crop geometry, audio features, label order).


rule export_bundle:
    input:
        unpack(bundle_inputs),
    output:
        bundle=directory(f"{R}/bundle"),
    params:
        models=bundle_models(),
        cnns=PLAN.bundle_cnns(),
        faces=result_settings(config["faces"], "batch_size"),
        audio=result_settings(config["audio"]),
        aggregate=config["cnn"]["aggregate"],
        features={b: PLAN.features(b) for b in backbones()},
    log:
        f"{R}/logs/export_bundle.log",
    conda:
        "../envs/video.yaml"
    script:
        "../workflow/scripts/export_bundle.py"
