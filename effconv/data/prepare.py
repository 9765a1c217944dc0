"""One-off dataset preparation from the command line (imported on use only: no side effects on import).

    python -m effconv.data.prepare imagenet-val <val dir> <ground truth> [--copy] [--dry-run]

sorts the flat ``val/`` of the official ILSVRC2012 archive into ``val/<wnid>/`` class folders, the layout
ImageFolder-style readers (and torchvision's ``ImageNet``) expect. The ground truth is the devkit
(``ILSVRC2012_devkit_t12/`` or ``.tar.gz``), its ``data/ILSVRC2012_validation_ground_truth.txt`` (with
``meta.mat`` beside it), or Kaggle's ``LOC_val_solution.csv``. The devkit's class IDs are mapped to wnids
through ``meta.mat``; files already in class folders are left alone, so running it twice is harmless.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from effconv.errors import UserError


def sort_imagenet_val(val_dir: Path, ground_truth: Path, copy: bool = False, dry_run: bool = False) -> dict[str, int]:
    """Move (or copy) each ILSVRC2012_val_<n>.JPEG of ``val_dir`` into ``val_dir/<wnid>/``; returns counts."""
    from effconv.data.imagenet import VAL_NAME, val_ground_truth

    val_dir, ground_truth = Path(val_dir), Path(ground_truth)
    if not val_dir.is_dir():
        raise UserError(f"{val_dir} is not a directory; give the flat val/ folder of ILSVRC2012_img_val.tar")
    if not ground_truth.exists():
        raise UserError(
            f"{ground_truth} does not exist; give the devkit folder or .tar.gz, its ground-truth "
            ".txt, or LOC_val_solution.csv"
        )
    truth = val_ground_truth(ground_truth)
    flat = sorted(p for p in val_dir.iterdir() if p.is_file() and VAL_NAME.match(p.name))
    if not flat:
        raise UserError(f"{val_dir} holds no flat ILSVRC2012_val_<8 digits>.JPEG files (already sorted?)")
    unlabeled = [p.name for p in flat if int(VAL_NAME.match(p.name).group(1)) not in truth]
    if unlabeled:
        raise UserError(
            f"{ground_truth} has no label for {len(unlabeled)} file(s), e.g. {unlabeled[0]}; is it "
            "the ground truth of this val set?"
        )
    counts: dict[str, int] = {}
    for path in flat:
        wnid = truth[int(VAL_NAME.match(path.name).group(1))]
        counts[wnid] = counts.get(wnid, 0) + 1
        if dry_run:
            continue
        (val_dir / wnid).mkdir(exist_ok=True)
        (shutil.copy2 if copy else shutil.move)(path, val_dir / wnid / path.name)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m effconv.data.prepare")
    commands = parser.add_subparsers(dest="command", required=True)
    val = commands.add_parser("imagenet-val", help="sort the flat ImageNet val/ into class folders")
    val.add_argument("val_dir", type=Path, help="the flat val/ folder")
    val.add_argument(
        "ground_truth",
        type=Path,
        help="ILSVRC2012_devkit_t12/ or .tar.gz, its ground-truth .txt, or LOC_val_solution.csv",
    )
    val.add_argument("--copy", action="store_true", help="copy instead of moving the files")
    val.add_argument("--dry-run", action="store_true", help="only count what would be moved")
    args = parser.parse_args(argv)
    try:
        counts = sort_imagenet_val(args.val_dir, args.ground_truth, args.copy, args.dry_run)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return UserError.exit_code
    verb = "would sort" if args.dry_run else ("copied" if args.copy else "moved")
    print(f"{verb} {sum(counts.values())} images into {len(counts)} class folders under {args.val_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
