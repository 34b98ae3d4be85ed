"""Does detection on the bounded copy find the faces full-resolution detection finds?

Big photos are detected on a reduced decode shrunk to DETECT_SIDE (faceid.detect). This
script measures what that costs in faces, on LFW photos made large: each photo (250 px) is
scaled up 8x to a 2000x2000 JPEG and goes through faceid's own path (reduced JPEG decode,
bounded copy, boxes mapped back); the reference is HOG at upsample 1 on the original photo,
i.e. the full-resolution detection of the same content. A face counts as found again when a
box in the big photo overlaps the reference box (scaled 8x) with IoU >= 0.5. Group photos
(four LFW photos side by side, scaled 4x to 4000x1000) are counted the same way, face by face.
Also reported: the landmark shift (fraction of the inter-eye distance) and the embedding's
squared distance between the big photo's crop and the original's (verification threshold 1.24).

    python scripts/detection_agreement.py --photos 1000 --groups 100 \
        --json-out reports/detection.json
"""

from __future__ import annotations

import io
import json
import statistics
import sys
from pathlib import Path

import click
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LFW = ROOT.parent / "shared" / "data" / "lfw"
UPSCALE, GROUP_UPSCALE, GROUP_SIZE = 8, 4, 4


def jpeg_bytes(image: np.ndarray, factor: int) -> bytes:
    from PIL import Image

    im = Image.fromarray(image)
    im = im.resize((im.width * factor, im.height * factor), Image.BICUBIC)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=92)
    return out.getvalue()


def iou(a: tuple, b: tuple) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def matched(reference: list, found: list, factor: int) -> list:
    """For each reference face, the big photo's face that is the same one (or None)."""
    out = []
    for ref in reference:
        box = tuple(v * factor for v in ref.box)
        best = max(found, key=lambda f: iou(f.box, box), default=None)
        out.append(best if best is not None and iou(best.box, box) >= 0.5 else None)
    return out


@click.command()
@click.option("--lfw", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_LFW)
@click.option("--photos", default=1000, show_default=True, help="LFW photos, spread over LFW.")
@click.option("--groups", default=100, show_default=True, help="Group photos of four.")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path))
def main(lfw: Path, photos: int, groups: int, json_out: Path | None) -> None:
    """Print how many faces the bounded detection finds again, as a markdown summary."""
    from tqdm import tqdm

    from faceid.detect import DETECT_SIDE, DlibHOGDetector
    from faceid.imageio import load_image
    from faceid.model.encoder import Encoder
    from faceid.pipeline import align_face, crop_photo, find_faces, open_picture

    files = sorted(lfw.glob("*/*.jpg"))
    step = max(1, len(files) // max(photos, 1))
    sample = files[::step][:photos]
    full = DlibHOGDetector(1, max_side=10**6)  # never shrinks: the reference
    bounded = DlibHOGDetector(1)  # faceid's default (DETECT_SIDE)
    encoder = Encoder.load(None, "cpu")
    size = encoder.input_size

    with_face, again, shifts, distances = 0, 0, [], []
    for path in tqdm(sample, desc="photos", file=sys.stderr):
        image = load_image(path)
        reference = full.detect(image)
        if not reference:
            continue
        with_face += 1
        ref = min(reference, key=lambda f: abs((f.box[0] + f.box[2]) / 2 - image.shape[1] / 2))
        picture = open_picture(jpeg_bytes(image, UPSCALE), bounded)
        (hit,) = matched([ref], find_faces(picture, bounded), UPSCALE)
        if hit is None:
            continue
        again += 1
        ref_points = (ref.landmarks + 0.5) * UPSCALE - 0.5
        eyes = np.linalg.norm(ref_points[[0, 1]].mean(0) - ref_points[[2, 3]].mean(0))
        shifts.append(float(np.abs(hit.landmarks - ref_points).max() / eyes))
        small = crop_photo(path, full, size, pick="center").crop
        a, b = encoder.embed(np.stack([small, align_face(picture, hit, size)]))
        distances.append(float(((a - b) ** 2).sum()))

    rng = np.random.default_rng(0)
    group_faces, group_again = 0, 0
    for _ in tqdm(range(groups), desc="groups", file=sys.stderr):
        chosen = rng.choice(len(files), GROUP_SIZE, replace=False)
        row = np.concatenate([load_image(files[i]) for i in chosen], axis=1)
        reference = full.detect(row)
        picture = open_picture(jpeg_bytes(row, GROUP_UPSCALE), bounded)
        hits = matched(reference, find_faces(picture, bounded), GROUP_UPSCALE)
        group_faces += len(reference)
        group_again += sum(h is not None for h in hits)

    result = {
        "detect_side": DETECT_SIDE,
        "lfw": {
            "photos": len(sample),
            "with_a_face_at_full_resolution": with_face,
            "found_again_8x": again,
            "rate": round(again / with_face, 4) if with_face else None,
            "landmark_shift_median": round(statistics.median(shifts), 4) if shifts else None,
            "landmark_shift_p95": round(float(np.percentile(shifts, 95)), 4) if shifts else None,
            "embedding_sq_distance_median": round(statistics.median(distances), 4)
            if distances
            else None,
            "embedding_sq_distance_p99": round(float(np.percentile(distances, 99)), 4)
            if distances
            else None,
        },
        "groups": {
            "photos": groups,
            "faces_at_full_resolution": group_faces,
            "found_again_4x": group_again,
            "rate": round(group_again / group_faces, 4) if group_faces else None,
        },
    }
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(result, indent=1) + "\n")
    lf, gr = result["lfw"], result["groups"]
    click.echo(
        f"LFW photos scaled 8x: {lf['found_again_8x']}/{lf['with_a_face_at_full_resolution']} "
        f"faces found again ({lf['rate']}); landmark shift median {lf['landmark_shift_median']}, "
        f"p95 {lf['landmark_shift_p95']} of the inter-eye distance; embedding squared distance "
        f"to the original's median {lf['embedding_sq_distance_median']}, p99 "
        f"{lf['embedding_sq_distance_p99']}.\n"
        f"Group photos of four scaled 4x: {gr['found_again_4x']}/{gr['faces_at_full_resolution']} "
        f"faces found again ({gr['rate']})."
    )


if __name__ == "__main__":
    main()
