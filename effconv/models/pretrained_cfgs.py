"""timm pretrained configs: how each model's inputs are prepared, per dataset its paper trains it on.

timm keeps one ``PretrainedCfg`` per model and tag (``resnet20_cifar.cifar100``): input size, mean/std,
crop and interpolation (what ``timm.data.resolve_model_data_config(model)`` hands timm's transforms), the
number of classes, the final feature map (``pool_size``), the first conv and classifier modules (what timm
adapts for other channel or class counts) and the paper. The first tag of a model is its default, and its
class count is the default ``num_classes``. A tag is the name of the dataset (``conf/data/<tag>.yaml``).

No weights are hosted: no ``url`` or ``hf_hub_id``. ``pretrained=True`` loads a local file given as
``pretrained_cfg_overlay=dict(file=...)``.
"""

import math

# Evaluation preprocessing of each dataset, as conf/data/<name>.yaml trains and evaluates with it
# (tests/test_timm_api.py checks the two agree): image size, classes, mean, std, centre-crop fraction.
DATASETS = {
    "imagenet": (224, 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 0.875),  # resize 256, crop 224
    "cifar10": (32, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), 1.0),
    "cifar100": (32, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 1.0),
    "svhn": (32, 10, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), 1.0),
    "stl10": (96, 10, (0.4467, 0.4398, 0.4066), (0.2603, 0.2566, 0.2713), 1.0),
    "tiny_imagenet": (56, 200, (0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262), 0.875),  # centre 56 of 64
    "imagenet32": (32, 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1.0),
    "digits": (32, 10, (0.3054, 0.3054, 0.3054), (0.3237, 0.3237, 0.3237), 1.0),
}

# where a paper's runs normalise a dataset with other statistics (the experiment config overrides data.mean/std)
PAPER_NORMALISATION = {
    # the Multiception authors' dataset.py normalises STL-10 with their CIFAR-10 values
    # (conf/experiment/multiception/table2.yaml)
    ("multiception", "stl10"): ((0.4914, 0.4824, 0.4467), (0.2471, 0.2435, 0.2616)),
}

PAPERS = {
    "dicenet": ("DiCENet: Dimension-wise Convolutions for Efficient Networks", "arXiv:1906.03516"),
    "micronet": ("MicroNet: Improving Image Recognition with Extremely Low FLOPs", "arXiv:2108.05894"),
    "mixconv": ("MixConv: Mixed Depthwise Convolutional Kernels", "arXiv:1907.09595"),
    "xsepconv": ("XSepConv: Extremely Separated Convolution", "arXiv:2002.12046"),
    "multiception": (
        "Depthwise Multiception Convolution for Reducing Network Parameters without Sacrificing Accuracy",
        "arXiv:2011.03701",
    ),
}
CODE = {  # the authors' code our networks were checked against
    "dicenet": "https://github.com/sacmehta/EdgeNets",
    "micronet": "https://github.com/liyunsheng13/micronet",
    "multiception": "https://github.com/guoqingbao/Multiception",
}


def dataset_cfgs(
    name: str,
    paper: str | None,
    datasets: list[str],
    stride: int | None,
    first_conv: str | None,
    classifier: str | tuple[str, ...],
) -> dict[str, dict]:
    """``{'<name>.<dataset>': cfg}`` for timm's ``generate_default_cfgs``; the first dataset is the default.

    ``stride``: the network's total stride, which gives the final feature map (``pool_size``; None: the
    network has none). ``paper`` None: a network of no paper (test models).
    """
    if paper is not None and paper not in PAPERS:
        raise ValueError(f"unknown paper '{paper}'; known: {', '.join(PAPERS)}")
    paper_name, paper_id = PAPERS.get(paper, (None, None))
    cfgs = {}
    for i, dataset in enumerate(datasets):
        size, classes, mean, std, crop_pct = DATASETS[dataset]
        mean, std = PAPER_NORMALISATION.get((paper, dataset), (mean, std))
        final = math.ceil(size / stride) if stride else None
        cfgs[f"{name}.{dataset}" + ("*" if i == 0 else "")] = {
            "input_size": (3, size, size),
            "num_classes": classes,
            "mean": mean,
            "std": std,
            "crop_pct": crop_pct,
            "interpolation": "bilinear",
            "pool_size": (final, final) if final else None,
            "first_conv": first_conv,
            "classifier": classifier,
            "paper_name": paper_name,
            "paper_ids": paper_id,
            "origin_url": CODE.get(paper),
        }
    return cfgs
