"""Runs worth starting by name: each a body for POST /api/runs, and a sentence saying what it is.
Data only: GET /api/presets serves the list as it stands, the first being the defaults."""

PRESETS: list[dict] = [
    {
        "id": "lecture-recommended",
        "name": "the lecture's recommendation (the defaults)",
        "text": "The lecture's deep network as it recommends it for tanh: kaiming init with gain 5/3, 200,000 SGD "
        "steps at lr 0.1 (0.01 after step 150,000); minibatches from a generator of their own and torch's "
        "BatchNorm (biased variance), so paired runs of any shape see the same batches.",
        "body": {"name": "the lecture's recommendation", "config": {}},
    },
    {
        "id": "lecture-notebook",
        "name": "the lecture's notebook, exactly",
        "text": "The saved run of makemore_part3_bn.ipynb: gain 1.0 (its `*= 1.0 #5/3`), minibatches drawn from "
        "the init's generator, BatchNorm normalising with x.var() (unbiased), 1,001 steps (its loop breaks "
        "after step 1000). On the lecture's names file it prints the notebook's numbers: train 2.4003, dev 2.3982.",
        "body": {
            "name": "the lecture's notebook, exactly",
            "config": {
                "gain": 1.0,
                "batch_order": "lecture",
                "bn_variance": "unbiased",
                "steps": 1001,
                "lr": 0.1,
                "lr_decay_step": 150_000,
                "seed": 2147483647,
            },
        },
    },
]
