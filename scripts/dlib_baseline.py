"""dlib's face model (the one behind `face_recognition`) on the same protocols as faceid.

Same photos, same detection and face choice (the central face, central-box
fallback), same metrics code: only the descriptor differs. Distances are squared
L2 between dlib's descriptors; face_recognition's default tolerance of 0.6 (L2)
is 0.36 squared.

    python scripts/dlib_baseline.py --root ../shared/data/lfw \
        --pairs ../shared/data/lfw/pairsDevTest.txt --people ../shared/data/lfw/peopleDevTest.txt
"""

from __future__ import annotations

import json
from multiprocessing import get_context
from pathlib import Path

import click
import numpy as np

from faceid.distance import pairwise_squared_l2, squared_l2

TOLERANCE_SQ = 0.6**2
_state: dict = {}


def _init() -> None:
    from faceid.detect import DlibHOGDetector

    _state["detector"] = DlibHOGDetector(1)


def _describe(path: str) -> np.ndarray:
    from faceid.imageio import load_image
    from faceid.model.dlib_teacher import dlib_descriptor
    from faceid.pipeline import crop_photo

    image = load_image(path)
    face = crop_photo(image, _state["detector"], 16, pick="center", on_no_face="full-image").face
    return dlib_descriptor(image, face.box)


def describe(paths: list[Path], workers: int) -> dict[Path, np.ndarray]:
    from tqdm import tqdm

    with get_context("spawn").Pool(workers, _init) as pool:
        out = list(
            tqdm(
                pool.imap(_describe, [str(p) for p in paths], chunksize=8),
                total=len(paths),
                desc="dlib",
                unit="photo",
            )
        )
    return dict(zip(paths, out))


def _sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return pairwise_squared_l2(a, b)


@click.command()
@click.option(
    "--root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True
)
@click.option("--pairs", "pairs_file", type=click.Path(exists=True, path_type=Path), required=True)
@click.option(
    "--people",
    "people_file",
    type=click.Path(exists=True, path_type=Path),
    help="Identification on these people only (e.g. peopleDevTest.txt).",
)
@click.option(
    "--strangers",
    type=click.Choice(["all", "half"]),
    default="all",
    show_default=True,
    help="As faceid evaluate identify --strangers: one-photo people all probe as strangers, "
    "or half are enrolled as distractors.",
)
@click.option("--workers", default=2, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("reports/dlib-baseline.json"))
def main(root, pairs_file, people_file, strangers, workers, out):
    from faceid.evaluate.protocols import identify_split, read_pairs, read_people, scan_identities
    from faceid.evaluate.report import identify_report, pairs_report, write_json
    from faceid.evaluate.run import STRANGERS

    pairs = read_pairs(pairs_file, root)
    result = {
        "model": "dlib_face_recognition_resnet_model_v1",
        "threshold": TOLERANCE_SQ,
        "strangers": strangers,
    }
    identities = scan_identities(root)
    if people_file:
        wanted = {n for n, _ in read_people(people_file)}
        identities = {n: v for n, v in identities.items() if n in wanted}
    split = (
        identify_split(identities, distractor_share=STRANGERS[strangers]) if people_file else None
    )
    paths = {p for pr in pairs for p in (pr.path_a, pr.path_b)}
    if split:
        paths |= {
            p for g in (split.gallery, split.genuine_probes, split.impostor_probes) for _, p in g
        }
    vec = describe(sorted(paths), workers)

    dist = np.array([squared_l2(vec[p.path_a], vec[p.path_b]) for p in pairs])
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    result["pairs"] = pairs_report(dist, same, folds, stored_threshold=TOLERANCE_SQ)
    if split:
        gallery = np.stack([vec[p] for _, p in split.gallery])
        result["identify"] = identify_report(
            _sq(np.stack([vec[p] for _, p in split.genuine_probes]), gallery),
            [n for n, _ in split.genuine_probes],
            [n for n, _ in split.gallery],
            _sq(np.stack([vec[p] for _, p in split.impostor_probes]), gallery),
            stored_threshold=TOLERANCE_SQ,
        )
    write_json(result, out)
    click.echo(
        json.dumps(
            {
                "pairs_kfold_accuracy": result["pairs"]["kfold_accuracy"]["mean"],
                "pairs_roc_auc": result["pairs"]["roc_auc"],
                "pairs_at_tolerance": result["pairs"]["stored_threshold"],
                "identify": {
                    k: result["identify"][k]
                    for k in (
                        "rank1",
                        "rank5",
                        "dir_at_far",
                        "fnir_at_fpir",
                        "ratio",
                        "stored_threshold",
                    )
                }
                if split
                else None,
                "report": str(out),
            },
            indent=1,
            default=float,
        )
    )


if __name__ == "__main__":
    main()
