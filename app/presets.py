"""Runs and sweeps worth starting by name: each a body for POST /api/runs (kind "run") or POST
/api/sweeps (kind "sweep"), and what it shows in a sentence or two. Data only: GET /api/presets serves
the list as it stands, the first being the defaults.

The sweeps are the lecture's experiments on bnscope's network, the deeper one of the lecture's second
half (5 x [Linear -> BatchNorm1d -> Tanh]). Their texts state what the sweep shows on the bundled
names.txt (tests/test_presets.py trains each and checks it); where the lecture printed a number, it is
quoted and labelled with the network it came from."""

PRESETS: list[dict] = [
    {
        "id": "lecture-recommended",
        "kind": "run",
        "name": "the lecture's recommendation (the defaults)",
        "text": "The lecture's deep network as it recommends it for tanh: kaiming init with gain 5/3, 200,000 SGD "
        "steps at lr 0.1 (0.01 after step 150,000); minibatches from a generator of their own and torch's "
        "BatchNorm (biased variance), so paired runs of any shape see the same batches.",
        "body": {"name": "the lecture's recommendation", "config": {}},
    },
    {
        "id": "lecture-notebook",
        "kind": "run",
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
    {
        "id": "confidently-wrong",
        "kind": "sweep",
        "name": "1. the confidently wrong initial loss",
        "text": "The last layer's init scale (last_layer_scale 1, 0.1, 0.01; BatchNorm off, so it scales the output "
        "Linear) sets how sure the untrained network is. At 1 the loss at step 0 is about 3.5, above "
        "-ln(1/27) = 3.30, a uniform guess's; at 0.1 and 0.01 it starts at 3.30. The lecture's one-hidden-layer "
        "network, whose logits were far larger, printed 27.8817 at step 0 and 3.3221 after the fix.",
        "body": {"config": {"batchnorm": False, "steps": 2000}, "vary": {"last_layer_scale": [1.0, 0.1, 0.01]}},
    },
    {
        "id": "saturation-vs-gain",
        "kind": "sweep",
        "name": "2. tanh saturation against the gain, without BatchNorm",
        "text": "Without BatchNorm the init gain decides how much of each tanh layer sits in its flat tail (|t| > "
        "0.97) from step 0: almost none at gains 0.5 and 1, about a tenth at 5/3, nearly half at 3 and two thirds "
        "at 5, where those units pass back almost no gradient. See the saturation panel and the dead-unit images.",
        "body": {"config": {"batchnorm": False, "steps": 2000}, "vary": {"gain": [0.5, 1.0, 5 / 3, 3.0, 5.0]}},
    },
    {
        "id": "kaiming-init",
        "kind": "sweep",
        "name": "3. Kaiming gain 5/3 against 1 and torch's default init",
        "text": "BatchNorm off, 5,000 steps: kaiming init (randn / sqrt(fan_in) x gain) with gain 5/3 ends with the "
        "lowest dev loss, gain 1 next, torch's default init (uniform +-1/sqrt(fan_in), no gain) the highest: its "
        "activations shrink layer by layer. torch's default takes no gain, so its two members are the same "
        "network, a check that members are paired. The lecture's one-hidden-layer network: dev 2.1026 with its "
        "hand-tuned init, 2.1069 with kaiming.",
        "body": {
            "config": {"batchnorm": False, "steps": 5000},
            "vary": {"init": ["kaiming", "torch-default"], "gain": [1.0, 5 / 3]},
        },
    },
    {
        "id": "batchnorm-x-gain",
        "kind": "sweep",
        "name": "4. BatchNorm on and off, across the gain",
        "text": "5,000 steps of each gain with BatchNorm on and off: with BatchNorm the dev loss varies about half "
        "as much across gains than without, where gain 5/3 is best and 5 worst. The lecture's one-hidden-layer "
        "network's dev loss over its fixes: 2.1682 (first), 2.1310 (softmax fixed), 2.1026 (tanh fixed), 2.1048 with "
        "BatchNorm.",
        "body": {"config": {"steps": 5000}, "vary": {"gain": [0.5, 1.0, 5 / 3, 3.0, 5.0], "batchnorm": [True, False]}},
    },
    {
        "id": "lr-vs-update-ratio",
        "kind": "sweep",
        "name": "5. the learning rate against update:data",
        "text": "update:data, log10(std(lr x grad) / std(weight)), rises with the learning rate, a decade or a "
        "little more per decade up to 0.1. The lecture's rule of thumb puts it near -3: lr 0.01 stays below it, "
        "0.1 above (the default), and at 0.001 the dev loss is still far above the others after 2,000 steps.",
        "body": {"config": {"steps": 2000}, "vary": {"lr": [0.001, 0.01, 0.1, 1.0]}},
    },
]
