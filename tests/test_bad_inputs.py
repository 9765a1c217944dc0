"""The bad-input catalogue (docs/errors.md): every entry is one line saying what was wrong and how to fix it,
and a non-zero exit. Most go through the same code as the command line in-process (preflight, compose,
train or evaluate); a few run the real entry points to check the stderr line and the exit status.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
import sklearn.datasets
import torch

import tests.helper_models  # noqa: F401
from effconv import cli
from effconv.config import compose as compose_any
from effconv.engine.loop import train
from effconv.errors import UserError
from effconv.evaluate_saved import evaluate_saved
from tests.conftest import REPO, compose, quick_overrides, run_cli

BUNDLED_DIGITS = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
MLP = ["model=timm", "model.name=test_tiny_mlp"]
SHORT = ["recipe.epochs=1", "limit_train_batches=2", "limit_eval_batches=1"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Paths the catalogue refers to: damaged dataset roots, a file that is not a checkpoint, an MLP run."""
    root = tmp_path_factory.mktemp("inputs")
    made = {"empty": root / "empty", "malformed": root / "malformed", "truncated": root / "truncated"}
    for directory in made.values():
        directory.mkdir()
    (made["malformed"] / "digits.csv.gz").write_bytes(gzip.compress(b"a,b\n"))
    (made["truncated"] / "digits.csv.gz").write_bytes(BUNDLED_DIGITS.read_bytes()[:3000])
    made["text"] = root / "notes.pt"
    made["text"].write_text("not a checkpoint\n")
    mlp = compose(*quick_overrides(root / "runs", *MLP, *SHORT, "run_name=mlp"))
    train(mlp)
    made["mlp_run"] = root / "runs" / "mlp"
    made["mlp_ckpt"] = made["mlp_run"] / "checkpoints" / "last.pt"
    made["bare"] = root / "state_dict.pth"  # weights alone, as published code bases save them
    torch.save(torch.load(made["mlp_ckpt"], weights_only=True)["state_dict"], made["bare"])
    made["root"] = root
    return made


# id -> (overrides, expected message: a regular expression matched from the start of the line)
TRAIN = {
    "unknown-model": (["model=nope"], r"unknown model 'nope'; available: dicenet_010, .*; see effconv/conf/model/$"),
    "unknown-timm-model": (MLP[:1] + ["model.name=nope_net"], r"unknown model 'nope_net' \(did you mean "),
    "model-timm-without-name": (["model=timm"], r"no value for model\.name: set model\.name=<value>"),
    "unknown-dataset": (["data=nope"], r"unknown data 'nope'; available: cifar10, "),
    "unknown-recipe": (["recipe=nope"], r"unknown recipe 'nope'; available: "),
    "unknown-logger": (["logger=nope"], r"unknown logger 'nope'; available: csv, tensorboard, wandb"),
    "unknown-launcher": (["launcher=nope"], r"unknown launcher 'nope'; available: local, slurm, submitit_local"),
    "unknown-hydra-launcher": (["hydra/launcher=nope"], r"In 'hydra/config': Could not find 'hydra/launcher/nope'"),
    "unknown-experiment": (["+experiment=nope"], r"unknown experiment 'nope'; available: "),
    "misspelt-key": (["recipe.epchs=3"], r"Could not override 'recipe\.epchs'.*\(did you mean epochs, "),
    "wrong-type": (["recipe.epochs=abc"], r".*recipe\.epochs=abc: Value 'abc' of type 'str' could not be conv"),
    "ambiguous-comma": (["recipe.epochs=1,2"], r"Ambiguous value for argument 'recipe\.epochs=1,2'"),
    "epochs-not-positive": (["recipe.epochs=-1"], r"recipe\.epochs must be >= 1 \(got -1\)$"),
    "batch-zero": (["recipe.batch_size=0"], r"recipe\.batch_size must be >= 1 \(got 0\)$"),
    "accumulation-zero": (["recipe.accum_steps=0"], r"recipe\.accum_steps must be >= 1 \(got 0\)$"),
    "lr-zero": (["recipe.lr=0"], r"recipe\.lr must be > 0 \(got 0\.0\)$"),
    "lr-reference-batch": (["recipe.lr_ref_batch=0"], r"recipe\.lr_ref_batch must be >= 1 or null \(got 0\)$"),
    "threads-zero": (["threads=0"], r"threads must be >= 1 or null \(got 0\)$"),
    "warmup-negative": (["recipe.warmup_epochs=-1"], r"recipe\.warmup_epochs must be >= 0 \(got -1\)$"),
    "label-smoothing": (["recipe.label_smoothing=1.5"], r"recipe\.label_smoothing must be in \[0, 1\) \(got 1\.5\)"),
    "ema-decay": (["recipe.ema_decay=1.5"], r"recipe\.ema_decay must be in \(0, 1\) \(got 1\.5\)$"),
    "unknown-optimizer": (["recipe.opt=adamx"], r"unknown optimizer 'adamx' \(did you mean adamax, "),
    "unknown-schedule": (["recipe.sched=nope"], r"recipe\.sched=nope: Unknown scheduler 'nope'"),
    "eval-every-zero": (["eval_every=0"], r"eval_every must be >= 1 \(got 0\)$"),
    "amp-unknown": (["amp=fp8"], r"amp must be auto, none, bf16 or fp16 \(got fp8\)$"),
    "amp-fp16-on-cpu": (["amp=fp16"], r"amp=fp16 needs a CUDA device \(loss scaling\); use amp=bf16 or amp=none"),
    "device-unknown": (["device=tpu"], r"device 'tpu' is not a device; use auto, cpu, cuda or cuda:N$"),
    "device-cuda-without-gpu": (["device=cuda"], r"device=cuda but no CUDA GPU is visible; use device=cpu"),
    "unknown-knob": (["+model.width=2"], r"model resnet20_cifar has no knob 'width' \(did you mean widths\?\)"),
    "impossible-knob": (
        ["model.kernels=[3,3]"],
        r"model resnet20_cifar: kernels needs one entry \(a kernel or a list of kernels\) per stage \(3\), "
        r"got \[3, 3\]$",
    ),
    "unknown-conv-unit": (
        ["model.conv=nope"],
        r"model resnet20_cifar: unknown conv 'nope'; use one of standard, dsconv, .* "
        r"or a unit of effconv\.ops\.UNITS \(dice, ",
    ),
    "renamed-knob-dw": (
        ["model=mobilenetv3_small_xsep", "model.dw=dw"],
        r"model\.dw is now model\.conv \(the same values: dw, xsepconv, xsepconv_b, xsepconv_p, xsepconv_no2x2\)$",
    ),
    "renamed-knob-depthwise": (
        ["model=micronet_m0", "+model.depthwise=kxk"],
        r"model micronet_m0: depthwise is now conv \(depthwise=micro is conv=micro_dw, depthwise=kxk is conv=dw\)$",
    ),
    "unknown-transform": (["data.train_transform=nope"], r"unknown transform preset 'nope' \(did you mean none\?\)"),
    "data-root-missing": (["data.root=/nonexistent"], r"digits: data\.root=/nonexistent is not a directory; expe"),
    "data-file-missing": (["data.root={empty}"], r"digits: {empty}/digits\.csv\.gz not found; expected scikit"),
    "data-file-malformed": (["data.root={malformed}"], r"digits: {malformed}/digits\.csv\.gz is malformed \("),
    "data-file-truncated": (["data.root={truncated}"], r"digits: cannot read the files under data\.root={truncated}"),
    "num-classes-too-small": (["data.num_classes=5"], r"digits train: labels span 0\.\.9 but data\.num_classes=5;"),
    "output-root-unwritable": (["output_root=/proc/effconv"], r"cannot create run directory /proc/effconv/.*; set ou"),
    "wandb-mode": (["logger=wandb", "logger.mode=sometimes"], r"logger\.mode must be online, offline or disabled"),
    "resume-missing-file": (["resume=/nonexistent.pt"], r"resume must be auto, never or an existing checkpoint"),
    "resume-not-a-checkpoint": (["resume={text}"], r"checkpoint {text} is unreadable \(\w+\); it is truncated or n"),
    "resume-another-model": (["resume={mlp_ckpt}"], r"checkpoint {mlp_ckpt} is of model test_tiny_mlp, not resnet"),
    "resume-another-num-classes": (
        [*MLP, *SHORT, "data.num_classes=12", "resume={mlp_ckpt}"],
        r"checkpoint {mlp_ckpt} does not fit this model/optimizer \(Error\(s\) in loading state_dict for TinyMLP",
    ),
    "init-from-another-architecture": (
        ["model.init_from={mlp_run}"],
        r"model\.init_from={mlp_run} does not fit resnet20_cifar: expected an effconv resnet20_cifar state dict with "
        r"the same knobs or a guoqingbao/Multiception .*; first key that does not fit: 'features\.1\.weight' "
        r"\(32, 3072\) is not in the model$",
    ),
    "init-from-not-a-run": (["model.init_from={root}"], r"{root} holds no checkpoints/best\.pt or checkpoints/last"),
    "init-from-not-a-checkpoint": (["model.init_from={text}"], r"checkpoint {text} is unreadable"),
}
EVALUATE = {
    "evaluate-run-and-checkpoint": (["run={mlp_run}", "checkpoint={mlp_ckpt}"], r"give exactly one of run=<run dir>"),
    "evaluate-which": (["run={mlp_run}", "which=middle"], r"which must be best or last \(got middle\)$"),
    "evaluate-run-not-a-directory": (["run=/nonexistent"], r"run=/nonexistent is not a directory; pass a run dire"),
    "evaluate-not-a-checkpoint": (["checkpoint={text}"], r"checkpoint {text} is unreadable"),
    "evaluate-file-without-config": (
        ["checkpoint={bare}"],
        r"checkpoint {bare} holds no config \(it was not written by train\.py\): name the network and the dataset, "
        r"e\.g\. model=<name> ",
    ),
}


def fill(text: str, files: dict, escape: bool) -> str:
    for key, value in files.items():
        text = text.replace("{" + key + "}", re.escape(str(value)) if escape else str(value))
    return text


def failure(function, files, overrides, config_name="config") -> UserError:
    """The UserError the command line ``overrides`` ends with (preflight as the entry points, then the run)."""
    overrides = [fill(o, files, escape=False) for o in overrides]
    with pytest.raises(UserError) as error:
        cli.preflight(overrides, config_name)
        if config_name == "config":
            function(compose(*quick_overrides(files["root"] / "out", *overrides)))
        else:
            function(compose_any(overrides, config_name))
    return error.value


@pytest.mark.parametrize("case", list(TRAIN))
def test_train_input_is_refused_in_one_line(files, case):
    overrides, pattern = TRAIN[case]
    error = failure(train, files, overrides)
    assert "\n" not in str(error) and error.exit_code == 2
    assert re.match(fill(pattern, files, escape=True), str(error)), str(error)


@pytest.mark.parametrize("case", list(EVALUATE))
def test_evaluate_input_is_refused_in_one_line(files, case):
    overrides, pattern = EVALUATE[case]
    error = failure(evaluate_saved, files, overrides, "eval")
    assert "\n" not in str(error) and error.exit_code == 2
    assert re.match(fill(pattern, files, escape=True), str(error)), str(error)


def test_init_from_with_another_num_classes_is_fine_tuning_not_an_error(files, capsys):
    results = train(compose(*quick_overrides(files["root"] / "ft", *MLP, *SHORT, f"model.init_from={files['mlp_run']}",
                                             "data.num_classes=12")))  # fmt: skip
    assert results["num_classes"] == 12
    assert f"initialised from {files['mlp_run']}/checkpoints/best.pt (raw weights); new classifier: fc" in (
        capsys.readouterr().out
    )


def test_catalogue_is_documented():
    documented = (REPO / "docs" / "errors.md").read_text()
    missing = [case for case in [*TRAIN, *EVALUATE] if f"`{case}`" not in documented]
    assert not missing, f"add to docs/errors.md: {missing}"
    assert len(TRAIN) + len(EVALUATE) >= 25


@pytest.mark.parametrize(
    "entry, args",
    [
        ("train.py", ["recipe.epochs=abc"]),
        ("train.py", ["data.root={truncated}"]),
        ("train.py", ["resume={text}"]),
        ("evaluate.py", ["run={mlp_run}", "checkpoint={mlp_ckpt}"]),
    ],
)
def test_entry_points_print_one_line_and_exit_2(files, entry, args, tmp_path):
    args = [fill(a, files, escape=False) for a in args]
    done = run_cli(entry, *args, *([f"output_root={tmp_path}"] if entry == "train.py" else []), timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
    case = next(c for c, (o, _) in {**TRAIN, **EVALUATE}.items() if [fill(x, files, False) for x in o] == args)
    pattern = {**TRAIN, **EVALUATE}[case][1]
    assert re.match(fill(pattern, files, escape=True), lines[0][len("error: ") :]), lines[0]
