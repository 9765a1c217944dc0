"""Configuration: dataclass schemas behind the Hydra groups, resolvers, composition and validation.

The schemas make a misspelt key fail when Hydra composes the config (the whole config is in struct mode),
and give every value a type. The model group is the exception: its keys are the constructor knobs of the
chosen network, which differ per network, so they are checked when the model is built
(``effconv.models.create`` names the accepted knobs).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict

from effconv.errors import UserError, unknown_choice

CONF_DIR = Path(__file__).resolve().parent / "conf"  # shipped inside the package (pip install .)
GROUPS = ("model", "data", "recipe", "logger", "launcher", "experiment")


@dataclass
class DataConfig:
    name: str = MISSING
    root: Optional[str] = None  # directory holding the published top-level item (see docs/datasets.md)
    num_classes: int = MISSING
    img_size: int = 32  # training crop size (square)
    eval_size: Optional[int] = None  # evaluation crop size; None = img_size
    eval_resize: Optional[int] = None  # resize shorter side before the centre crop (ImageNet: 256)
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    train_transform: str = "none"  # augmentation preset, see effconv.data.transforms
    eval_transform: str = "none"
    crop_padding: int = 4  # pad-and-crop presets
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # random-resized-crop presets
    crop_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    hflip: float = 0.5
    use_extra: bool = False  # SVHN: train on train + extra
    skip_corrupt: bool = False  # ImageNet-style folders: skip and count unreadable images
    num_workers: int = 4  # streaming datasets only; in-memory datasets need no workers
    gpu_decode: bool = False  # ImageNet: decode JPEGs on the GPU when one is present
    verify_checksums: bool = False  # compare files with the official md5 (a mismatch only warns)
    cache_dir: Optional[str] = None  # where decoded uint8 caches go; None = next to the data
    train_split: str = "train"
    eval_split: str = "test"


@dataclass
class RecipeConfig:
    name: str = MISSING
    epochs: int = MISSING
    batch_size: int = MISSING  # per process and per micro-batch
    accum_steps: int = 1  # effective batch = batch_size x accum_steps x world size
    eval_batch_size: Optional[int] = None  # None = 2 x batch_size
    opt: str = "momentum"  # timm names: momentum (classic SGD), sgd/nesterov (Nesterov), rmsproptf, adamw...
    lr: float = MISSING  # per lr_ref_batch images, scaled linearly to the effective batch
    lr_ref_batch: Optional[int] = 256  # None: lr is used as given
    momentum: float = 0.9
    weight_decay: float = 0.0
    wd_exclude_bn_bias: bool = False  # no weight decay on BatchNorm and bias parameters
    opt_eps: Optional[float] = None
    opt_betas: Optional[list[float]] = None
    sched: str = "cosine"  # timm scheduler name: cosine, step, multistep, plateau, poly, tanh
    min_lr: float = 0.0
    warmup_epochs: int = 0
    warmup_lr: float = 0.0  # learning rate at the start of the linear warm-up
    decay_epochs: float = 30.0  # step schedule
    decay_rate: float = 0.1  # step schedule
    decay_milestones: list[int] = field(default_factory=list)  # multistep schedule
    sched_on_updates: bool = True  # the schedule moves every optimizer update, not every epoch
    label_smoothing: float = 0.0
    ema: bool = False
    ema_decay: float = 0.9998  # timm's meaning: ema = decay * ema + (1 - decay) * weights
    ema_warmup: bool = False
    clip_grad: Optional[float] = None
    clip_mode: str = "norm"


@dataclass
class LoggerConfig:
    name: str = "csv"  # csv | wandb | tensorboard; run files (summary.csv, metrics.jsonl) are always written
    mode: str = "offline"  # wandb: online | offline | disabled
    project: str = "effconv"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    model: Any = MISSING
    data: DataConfig = MISSING
    recipe: RecipeConfig = MISSING
    logger: LoggerConfig = MISSING
    experiment: Optional[str] = None  # set by effconv/conf/experiment/<paper>/<table>.yaml
    table: Any = None  # the table spec of an experiment (rows, columns, paper numbers)
    run_name: str = MISSING
    output_root: str = "outputs"
    run_dir: Optional[str] = None  # where the run's files go: Hydra's output directory of the job (config.yaml)
    seed: int = 0
    deterministic: bool = False  # also forbid non-deterministic GPU kernels (CPU runs are reproducible anyway)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (bf16 on a GPU with native bf16, else off) | none | bf16 | fp16
    channels_last: bool = True
    threads: Optional[int] = None  # CPU threads per process; null: OMP_NUM_THREADS, SLURM's cpus, 1 per local job
    compile: bool = False  # torch.compile the bare model
    compile_mode: Optional[str] = None
    sync_bn: bool = False  # DDP: SyncBatchNorm instead of reducing BN statistics before evaluation
    resume: str = "auto"  # auto | never | <checkpoint path>
    allow_resume_change: bool = False  # resume even if epochs / effective batch differ from the checkpoint
    checkpoint_interval_s: float = 600.0  # also write last.pt mid-epoch at this interval (0: epoch ends only)
    eval_every: int = 1
    limit_train_batches: Optional[int] = None  # debugging: batches per epoch
    limit_eval_batches: Optional[int] = None
    progress: bool = True  # console progress bar


@dataclass
class EvalConfig:
    run: Optional[str] = None  # a run directory
    checkpoint: Optional[str] = None  # or a checkpoint file (then model/data come from the config)
    which: str = "best"  # best | last (with run=)
    data_root: Optional[str] = None  # where the dataset is on this machine, if not where it was trained
    device: str = "auto"
    batch_size: int = 256
    throughput_batches: list[int] = field(default_factory=lambda: [1, 64])
    limit_eval_batches: Optional[int] = None
    output: Optional[str] = None  # where eval.json goes; None = the run dir, beside the checkpoint, or released/
    # a checkpoint without a config (the authors' released weights): the network and the dataset to evaluate on
    # (model=<name> [model.<knob>=...] data=<dataset>); they also replace a train.py checkpoint's own
    model: Any = None
    data: Optional[DataConfig] = None


@dataclass
class ExportConfig:
    run: Optional[str] = None  # a run directory
    checkpoint: Optional[str] = None  # or a checkpoint file (model and data from its config)
    model: Any = None  # or model=<name> alone (conf/model/): random weights, for latency work
    which: str = "best"  # best | last (with run=)
    weights: str = "raw"  # raw | ema
    format: str = "onnx"  # onnx | pt2 | aoti
    batch: str = "dynamic"  # dynamic | <n> (a fixed batch size)
    img_size: Optional[int] = None  # None: the run's image size (224 for model= alone)
    dynamic_hw: bool = False  # dynamic height and width too (not DiCENet: one export per resolution)
    num_classes: int = 1000  # with model= alone
    inference_path: bool = True  # apply effconv.deploy's rewrites before exporting
    optimize: bool = True  # ONNX: run the exporter's graph optimiser
    out: Optional[str] = None  # the artefact's path; None = <run>/export/ (or ./export/ for model= alone)
    data_root: Optional[str] = None  # where the run's dataset is on this machine, if not where it was trained
    verify_images: int = 256  # evaluation images compared with the eager model (random inputs without data)
    latency_batches: list[int] = field(default_factory=lambda: [1, 32])
    threads: Optional[int] = None  # CPU threads for verification and latency (null: torch's default)
    data: Any = None  # stands in for the dataset in model configs that refer to it (effconv/conf/export.yaml)


MAX_SUFFIX = 120  # file names are limited to 255 bytes; model-data-recipe and a hash fit in the rest


def _run_suffix(override_dirname: str) -> str:
    """'' or '__' + the overrides, made safe as one path component; long ones keep a stable hash."""
    if not override_dirname:
        return ""
    suffix = re.sub(r"[/\\\s]+", "_", override_dirname.replace("'", "").replace('"', ""))
    if len(suffix) > MAX_SUFFIX:
        digest = hashlib.sha1(suffix.encode()).hexdigest()[:10]
        suffix = f"{suffix[: MAX_SUFFIX - 12]}~{digest}"
    return "__" + suffix


def _experiment_prefix(experiment: Optional[str]) -> str:
    return f"{experiment}/" if experiment else ""


def _or_224(size: Optional[int]) -> int:
    return 224 if size is None else size


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="eval_schema", node=EvalConfig)
    cs.store(name="export_schema", node=ExportConfig)
    resolvers = (("run_suffix", _run_suffix), ("experiment_prefix", _experiment_prefix), ("or_224", _or_224))
    for name, fn in resolvers:
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def group_options(group: str) -> list[str]:
    """Option names of a config group, nested groups as 'paper/table'."""
    root = CONF_DIR / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def check_group_choices(overrides: list[str]) -> None:
    """Reject unknown group options (and knobs that have a new name) in command-line overrides with one line.

    Sweeps (``model=a,b``) are checked value by value; anything that is not a plain group choice is left to
    Hydra.
    """
    for line in overrides:
        key, sep, value = line.partition("=")
        _check_renamed_knob(key)
        group = key.lstrip("+~")
        if not sep or group not in GROUPS or any(c in value for c in "()[]{}$*"):
            continue
        options = group_options(group)
        for choice in value.split(","):
            if choice and choice != "null" and choice not in options:
                raise unknown_choice(group, choice, options, f"; see effconv/conf/{group}/")


def _check_renamed_knob(key: str) -> None:
    """``model.dw=...`` (a knob that has a new name, so no model config holds it): one line naming the new one.
    With ``+`` the knob reaches the model, which says the same (``effconv.models.create``)."""
    parent, _, leaf = key.rpartition(".")
    if parent == "model":
        from effconv.models.units import renamed_knob

        message = renamed_knob(leaf, prefix="model.")
        if message:
            raise UserError(message)


# keys whose values are paths: quoted for Hydra's override grammar, which takes ',' as a sweep list and
# refuses '=' or brackets in unquoted values (run directory names contain both)
PATH_KEYS = (
    "run",
    "checkpoint",
    "output",
    "out",
    "data_root",
    "resume",
    "model.init_from",
    "data.root",
    "data.cache_dir",
    "output_root",
)
_HYDRA_UNQUOTED = re.compile(r"^[\w/\\\-+.$%*@?|:~]*$")


def experiment_without_plus(overrides: list[str]) -> list[str]:
    """``+experiment=x`` -> ``experiment=x``: the defaults list holds ``experiment: null``, so Hydra takes the
    plain form (and refuses to append a group that is already listed); the ``+`` form of earlier commands
    keeps working."""
    return [line[1:] if line.startswith("+experiment=") else line for line in overrides]


def prepare_overrides(overrides: list[str]) -> list[str]:
    """What the command line (or a caller of ``compose``) gives, made ready for Hydra's override parser."""
    return quote_path_overrides(experiment_without_plus(list(overrides)))


def quote_path_overrides(overrides: list[str]) -> list[str]:
    """``run=outputs/a__x=1,y=2`` -> ``run='outputs/a__x=1,y=2'`` (already quoted values are left alone)."""
    quoted = []
    for line in overrides:
        key, sep, value = line.partition("=")
        if sep and key.lstrip("+~") in PATH_KEYS and value[:1] not in "'\"" and not _HYDRA_UNQUOTED.match(value):
            line = f"{key}='" + value.replace("'", "\\'") + "'"  # Hydra: only quotes need escaping
        quoted.append(line)
    return quoted


def compose(overrides: list[str] = (), config_name: str = "config") -> DictConfig:
    """Compose a config exactly as ``train.py`` would, for tests, the report and tools.

    The hydra node is kept (run names interpolate ``hydra:job.override_dirname``) and registered as the
    current HydraConfig, then the task config is returned without it. Outside a Hydra job there is no output
    directory: ``run_dir`` becomes the one a single run of these overrides would get (``hydra.run.dir``).
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    register_configs()
    overrides = prepare_overrides(overrides)
    check_group_choices(overrides)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # ${hydra:...} interpolations resolve through it
    with open_dict(cfg):
        if "run_name" in cfg:  # fix it now: a later compose replaces the global HydraConfig
            cfg.run_name = cfg.run_name
        if "run_dir" in cfg:
            cfg.run_dir = str(cfg.hydra.run.dir)
        del cfg["hydra"]
    return cfg


def validate(cfg: DictConfig) -> None:
    """Values that compose fine but cannot work: one line each, naming the key."""
    r = cfg.recipe
    checks = [
        (r.epochs >= 1, f"recipe.epochs must be >= 1 (got {r.epochs})"),
        (r.batch_size >= 1, f"recipe.batch_size must be >= 1 (got {r.batch_size})"),
        (r.accum_steps >= 1, f"recipe.accum_steps must be >= 1 (got {r.accum_steps})"),
        (r.lr > 0, f"recipe.lr must be > 0 (got {r.lr})"),
        (r.weight_decay >= 0, f"recipe.weight_decay must be >= 0 (got {r.weight_decay})"),
        (0 <= r.label_smoothing < 1, f"recipe.label_smoothing must be in [0, 1) (got {r.label_smoothing})"),
        (0 < r.ema_decay < 1, f"recipe.ema_decay must be in (0, 1) (got {r.ema_decay})"),
        (r.warmup_epochs >= 0, f"recipe.warmup_epochs must be >= 0 (got {r.warmup_epochs})"),
        (cfg.data.num_classes >= 1, f"data.num_classes must be >= 1 (got {cfg.data.num_classes})"),
        (cfg.data.img_size >= 1, f"data.img_size must be >= 1 (got {cfg.data.img_size})"),
        (cfg.amp in ("auto", "none", "bf16", "fp16"), f"amp must be auto, none, bf16 or fp16 (got {cfg.amp})"),
        (cfg.eval_every >= 1, f"eval_every must be >= 1 (got {cfg.eval_every})"),
        (cfg.threads is None or cfg.threads >= 1, f"threads must be >= 1 or null (got {cfg.threads})"),
        (
            cfg.resume in ("auto", "never") or Path(cfg.resume).is_file(),
            f"resume must be auto, never or an existing checkpoint file (got {cfg.resume})",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
    if r.lr_ref_batch is not None and r.lr_ref_batch < 1:
        raise UserError(f"recipe.lr_ref_batch must be >= 1 or null (got {r.lr_ref_batch})")


def to_plain(cfg: DictConfig) -> dict:
    """The resolved config as plain Python data (what checkpoints and results.json store)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def model_knobs(model_cfg: DictConfig) -> dict:
    """The network a model group describes: its knobs, without ``init_from`` (where weights come from)."""
    return {k: v for k, v in to_plain(model_cfg).items() if k != "init_from"}
