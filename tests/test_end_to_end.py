"""End to end with the shipped model on real photos of people it never trained on.

The people come from LFW's peopleDevTest.txt, which training never touches. The
bars are set below the model's measured accuracy (README) so they pin that the
pipeline works, not that every single photo is recognised.
"""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from faceid.cli import main

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _dev_test_people(min_photos: int, count: int) -> list[str]:
    rows = (LFW / "peopleDevTest.txt").read_text().splitlines()[1:]
    return [n for n, k in (r.split("\t") for r in rows) if int(k) >= min_photos][:count]


def _photo(name: str, i: int) -> str:
    return str(LFW / name / f"{name}_{i:04d}.jpg")


def run(args, gallery):
    # LFW news photos often show bystanders: the subject is the largest face.
    largest = ["--largest"] if args[0] in ("enroll", "verify", "identify") else []
    result = CliRunner().invoke(main, [*args, *largest, "--gallery", str(gallery), "--json"])
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory):
    if not LFW.is_dir():
        pytest.skip("../shared/data/lfw is absent: the end-to-end test needs real photos")
    gallery = tmp_path_factory.mktemp("e2e") / "gallery"
    people = _dev_test_people(4, 10)
    for name in people:
        r = run(["enroll", _photo(name, 1), _photo(name, 2), "--name", name], gallery)
        assert r.exit_code == 0, r.output
    return gallery, people


def test_enrolled_people_are_listed_with_their_photo_counts(enrolled):
    gallery, people = enrolled
    listed = json.loads(run(["list"], gallery).stdout)["people"]
    assert listed == {name: 2 for name in sorted(people)}


def test_new_photos_of_enrolled_people_are_identified(enrolled):
    # At --fpir 0.1 (10 % of strangers named among these 10 people; about the old fixed
    # threshold, FAR 1e-2 per pair): the default 1 % misses about half of them with the
    # shipped encoder, as its calibration predicts and `doctor` warns.
    gallery, people = enrolled
    right = 0
    for name in people:
        r = run(["identify", _photo(name, 3), "--top-k", "3", "--fpir", "0.1"], gallery)
        face = json.loads(r.stdout)["faces"][0]
        assert r.exit_code == (0 if face["name"] != "unknown" else 1)
        right += face["name"] == name
    assert right >= 8, f"only {right}/10 identified"


def test_people_never_enrolled_are_mostly_unknown(enrolled):
    gallery, people = enrolled
    strangers = [n for n in _dev_test_people(1, 60) if n not in people][:10]
    unknown = sum(
        json.loads(run(["identify", _photo(n, 1)], gallery).stdout)["faces"][0]["name"] == "unknown"
        for n in strangers
    )
    assert unknown >= 7, f"only {unknown}/10 strangers answered unknown"


def test_verify_tells_same_from_different_people(enrolled):
    gallery, people = enrolled
    same = [run(["verify", _photo(n, 3), _photo(n, 4)], gallery) for n in people]
    diff = [
        run(["verify", _photo(a, 3), _photo(b, 3)], gallery) for a, b in zip(people, people[1:])
    ]
    assert all(r.exit_code == (0 if json.loads(r.stdout)["same"] else 1) for r in same + diff)
    correct = sum(json.loads(r.stdout)["same"] for r in same)
    correct += sum(not json.loads(r.stdout)["same"] for r in diff)
    assert correct >= 0.8 * (len(same) + len(diff))


def test_removed_people_are_no_longer_identified(enrolled, tmp_path):
    gallery, people = enrolled
    g2 = tmp_path / "g2"
    name = people[0]
    assert run(["enroll", _photo(name, 1), "--name", name], g2).exit_code == 0
    assert run(["enroll", _photo(people[1], 1), "--name", people[1]], g2).exit_code == 0
    assert run(["remove", name], g2).exit_code == 0
    r = run(["identify", _photo(name, 1)], g2)
    assert json.loads(r.stdout)["faces"][0]["name"] != name


def test_the_readme_demo_never_names_the_wrong_person(tmp_path):
    """The Quickstart: a stranger is unknown, enrolled people are recognised, and nobody is
    given someone else's name (a miss is better than a false match). At the default rule
    (1 % of strangers named among 3 people) the shipped model names two of the three, as
    the README says (a looser --fpir 0.05 gives two wrong names there: its trade)."""
    gallery = tmp_path / "demo"
    assert run(["enroll", str(EXAMPLES / "people")], gallery).exit_code == 0
    named = {}
    for probe in sorted((EXAMPLES / "probes").glob("*.jpg")):
        out = json.loads(run(["identify", str(probe)], gallery).stdout)
        named[probe.stem[:-5]] = out["faces"][0]["name"]
    assert named.pop("Adrien_Brody") == "unknown"
    assert all(name in (person, "unknown") for person, name in named.items()), named
    assert sum(name == person for person, name in named.items()) >= 2, named
