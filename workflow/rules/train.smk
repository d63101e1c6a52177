# Evaluation training: each (dataset, genotype, seed) from scratch, CIFAR-style on one GPU,
# ImageNet on several GPUs of one node (itnas train --nproc starts torchrun), after a canary job
# with as many GPUs has checked that they all work (itnas gpu-check).


rule train:
    """Train one evaluation network of a CIFAR-like dataset (CIFAR-10/100, CINIC-10, SVHN)."""
    input:
        unpack(train_inputs),
        config=config["train"]["cifar"]["config"],
    output:
        metrics=f"{train_dir()}/metrics.json",
    log:
        log_file("train", "{dataset}", "{label}", "seed{seed}"),
    conda:
        "../envs/itnas.yaml"
    wildcard_constraints:
        dataset=wildcard_alternatives(CIFAR_LIKE),
    params:
        genotype=train_genotype,
        data_root=input_data_root,
        out=run_folder,
        overrides=train_overrides,
    threads: rule_threads("train")
    resources:
        **rule_resources("train"),
    shell:
        "ITNAS_RULE=train OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}"
        " itnas train --config {input.config} --genotype {params.genotype}"
        " --dataset {wildcards.dataset} --seed {wildcards.seed} --data-root {params.data_root}"
        " --label {wildcards.label} --out {params.out} {params.overrides} > {log} 2>&1"


rule gpu_check:
    """The canary before ImageNet: a job with the trainings' GPUs checks that torch sees them all."""
    input:
        config=config["train"]["imagenet"]["config"],
    output:
        # Temporary: gone once the trainings that waited for it have run, so restoring their
        # results (DVC) never reruns it, and a new ImageNet training gets a fresh check.
        temp(gpu_check_file()),
    log:
        log_file("gpu_check", "{dataset}"),
    conda:
        "../envs/itnas.yaml"
    wildcard_constraints:
        dataset=wildcard_alternatives([IMAGENET_DATASET]),
    params:
        overrides=imagenet_overrides,
    threads: rule_threads("gpu_check")
    resources:
        gpu=imagenet_gpus,
        **rule_resources("gpu_check"),
    shell:
        "ITNAS_RULE=gpu_check itnas gpu-check --expect {resources.gpu} --config {input.config}"
        " {params.overrides} --out {output} > {log} 2>&1"


rule train_imagenet:
    """Train one ImageNet evaluation network on `gpu` GPUs of one node (torchrun when > 1)."""
    input:
        unpack(train_inputs),
        config=config["train"]["imagenet"]["config"],
        gpu_check=gpu_check_file(),
    output:
        metrics=f"{train_dir()}/metrics.json",
    log:
        log_file("train", "{dataset}", "{label}", "seed{seed}"),
    conda:
        "../envs/itnas.yaml"
    wildcard_constraints:
        dataset=wildcard_alternatives([IMAGENET_DATASET]),
    params:
        genotype=train_genotype,
        data_root=input_data_root,
        out=run_folder,
        overrides=imagenet_overrides,
    threads: rule_threads("train_imagenet")
    resources:
        gpu=imagenet_gpus,
        **rule_resources("train_imagenet"),
    shell:
        # The job's threads are shared by its processes (one per GPU).
        "ITNAS_RULE=train_imagenet"
        " OMP_NUM_THREADS=$(( ({threads} + {resources.gpu} - 1) / {resources.gpu} ))"
        " itnas train --config {input.config} --nproc {resources.gpu} --genotype {params.genotype}"
        " --dataset {wildcards.dataset} --seed {wildcards.seed} --data-root {params.data_root}"
        " --label {wildcards.label} --out {params.out} {params.overrides} > {log} 2>&1"
