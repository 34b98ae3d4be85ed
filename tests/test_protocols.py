"""LFW protocol parsing (real files when ../shared is present) and identification splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from faceid.evaluate.protocols import (
    IdentifySplit,
    Pair,
    identify_split,
    pair_people,
    read_pairs,
    read_people,
    scan_identities,
)

LFW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw"


@pytest.fixture(scope="module")
def lfw() -> Path:
    if not (LFW / "pairs.txt").is_file():
        pytest.skip(f"LFW protocol files not found at {LFW}")
    return LFW


# --- real files --------------------------------------------------------------


def test_pairs_txt_view2(lfw):
    pairs = read_pairs(lfw / "pairs.txt", lfw)
    assert len(pairs) == 6000
    assert sum(p.same for p in pairs) == 3000
    counts = Counter((p.fold, p.same) for p in pairs)
    assert counts == {(f, s): 300 for f in range(10) for s in (True, False)}
    # folds are the file's contiguous blocks of 600
    assert [p.fold for p in pairs] == [i // 600 for i in range(6000)]
    first = pairs[0]  # "Abel_Pacheco 1 4"
    assert first == Pair(
        lfw / "Abel_Pacheco" / "Abel_Pacheco_0001.jpg",
        lfw / "Abel_Pacheco" / "Abel_Pacheco_0004.jpg",
        True,
        0,
    )
    assert all(p.path_a.is_file() and p.path_b.is_file() for p in pairs)


@pytest.mark.parametrize(("name", "n"), [("pairsDevTest.txt", 500), ("pairsDevTrain.txt", 1100)])
def test_pairs_dev_view1(lfw, name, n):
    pairs = read_pairs(lfw / name, lfw)
    assert len(pairs) == 2 * n
    assert sum(p.same for p in pairs) == n
    assert all(p.same for p in pairs[:n]) and not any(p.same for p in pairs[n:])
    # ten folds, each a contiguous tenth of the same pairs plus one of the different pairs
    counts = Counter((p.fold, p.same) for p in pairs)
    assert counts == {(f, s): n // 10 for f in range(10) for s in (True, False)}
    assert [p.fold for p in pairs[:n]] == sorted(p.fold for p in pairs[:n])
    assert all(p.path_a.is_file() and p.path_b.is_file() for p in pairs)


@pytest.mark.parametrize(
    ("name", "people", "images"),
    [
        ("peopleDevTrain.txt", 4038, 9525),
        ("peopleDevTest.txt", 1711, 3708),
        ("people.txt", 5749, 13233),  # ten folds, flattened
    ],
)
def test_people_files(lfw, name, people, images):
    rows = read_people(lfw / name)
    assert len(rows) == people
    assert sum(n for _, n in rows) == images
    assert len({name for name, _ in rows}) == people


def test_people_files_match_folders(lfw):
    rows = dict(read_people(lfw / "peopleDevTest.txt"))
    name = next(iter(rows))
    assert len(list((lfw / name).glob("*.jpg"))) == rows[name]


def test_dev_people_are_disjoint(lfw):
    train = {n for n, _ in read_people(lfw / "peopleDevTrain.txt")}
    test = {n for n, _ in read_people(lfw / "peopleDevTest.txt")}
    assert not train & test


# --- hand-written pairs files ------------------------------------------------


def _write(tmp_path: Path, text: str, name: str = "pairs.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_two_number_header_assigns_blocks(tmp_path):
    path = _write(
        tmp_path,
        "2\t1\nA\t1\t2\nA\t1\tB\t3\nC\t2\t10\nC\t1\tD\t1\n",
    )
    pairs = read_pairs(path, tmp_path / "img", ext=".png")
    assert [(p.same, p.fold) for p in pairs] == [(True, 0), (False, 0), (True, 1), (False, 1)]
    assert pairs[1].path_b == tmp_path / "img" / "B" / "B_0003.png"
    assert pairs[2].path_b == tmp_path / "img" / "C" / "C_0010.png"


def test_one_number_header_balances_folds(tmp_path):
    same = "".join(f"P{i}\t1\t2\n" for i in range(20))
    diff = "".join(f"P{i}\t1\tQ{i}\t1\n" for i in range(20))
    pairs = read_pairs(_write(tmp_path, "20\n" + same + diff + "\n\n"), tmp_path)
    assert [p.fold for p in pairs[:20]] == [i // 2 for i in range(20)]
    assert [p.fold for p in pairs[20:]] == [i // 2 for i in range(20)]


def test_small_one_number_header_uses_fewer_folds(tmp_path):
    pairs = read_pairs(_write(tmp_path, "2\nA\t1\t2\nB\t1\t2\nA\t1\tB\t1\nB\t2\tC\t1\n"), tmp_path)
    assert [p.fold for p in pairs] == [0, 1, 0, 1]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("1\nA\t1\nA\t1\tB\t1\n", 2, "expected 3 fields"),
        ("1\nA\t1\t2\t3\t4\nA\t1\tB\t1\n", 2, "expected 3 fields"),
        ("1\nA\tx\t2\nA\t1\tB\t1\n", 2, "must be an integer"),
        ("1\nA\t0\t2\nA\t1\tB\t1\n", 2, "must be >= 1"),
        ("1\nA\t1\t2\nA\t1\tB\t-1\n", 3, "must be >= 1"),
        ("1\nA\t1\tB\t1\nA\t1\t2\n", 2, "same-person"),
        ("1\nA\t1\t2\nA\t1\t3\n", 3, "different-people"),
        ("2\nA\t1\t2\nA\t1\tB\t1\n", 3, "announces 4 pair lines, file has 2"),
        ("1\nA\t1\t2\nA\t1\tB\t1\nC\t1\t2\n", 4, "announces 2 pair lines, file has 3"),
        # not an LFW header: read as the plain format, whose lines these are not
        ("one\nA\t1\t2\nA\t1\tB\t1\n", 1, "expected 'path_a<TAB>path_b<TAB>1'"),
        ("1 2 3\nA\t1\t2\nA\t1\tB\t1\n", 1, "or an LFW pairs file"),
    ],
)
def test_malformed_pairs_name_file_and_line(tmp_path, text, line, message):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as info:
        read_pairs(path, tmp_path)
    assert f"{path}:{line}:" in str(info.value)


def test_empty_pairs_file(tmp_path):
    with pytest.raises(ValueError, match="empty pairs file"):
        read_pairs(_write(tmp_path, "\n"), tmp_path)


# --- hand-written people files -----------------------------------------------


def test_people_simple_and_folded(tmp_path):
    simple = _write(tmp_path, "2\nAnn\t3\nBob\t1\n", "people_simple.txt")
    assert read_people(simple) == [("Ann", 3), ("Bob", 1)]
    folded = _write(tmp_path, "2\n1\nAnn\t3\n2\nBob\t1\nCid\t2\n", "people_folded.txt")
    assert read_people(folded) == [("Ann", 3), ("Bob", 1), ("Cid", 2)]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("3\nAnn\t3\nBob\t1\n", 3, "announces 3 people, file has 2"),
        ("2\nAnn\t3\nBob\n", 3, "expected 'name<TAB>n_images'"),
        ("2\nAnn\t3\nBob\tmany\n", 3, "must be an integer"),
        ("1\n1\nAnn\t3\nBob\t1\n", 4, "lines after the last announced fold"),
        ("2\n1\nAnn\t3\n5\nBob\t1\n", 4, "runs past the end"),
        ("3\n1\nAnn\t3\n", 1, "announces 3 folds"),
        ("2 3\nAnn\t3\n", 1, "single count"),
    ],
)
def test_malformed_people(tmp_path, text, line, message):
    path = _write(tmp_path, text, "people.txt")
    with pytest.raises(ValueError, match=message) as info:
        read_people(path)
    assert f"{path}:{line}:" in str(info.value)


# --- folders and splits ------------------------------------------------------


def test_scan_identities(tmp_path):
    for rel in [
        "Zed/Zed_0002.jpg",
        "Zed/Zed_0001.JPG",
        "Zed/notes.txt",
        "Zed/.hidden.jpg",
        "Amy/a.png",
        "Amy/b.webp",
        "Amy/c.jpeg",
        "Amy/d.bmp",
        "Empty/readme.md",
        ".cache/x.jpg",
    ]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / "stray.jpg").write_bytes(b"x")
    found = scan_identities(tmp_path)
    assert list(found) == ["Amy", "Zed"]
    assert [p.name for p in found["Amy"]] == ["a.png", "b.webp", "c.jpeg", "d.bmp"]
    assert [p.name for p in found["Zed"]] == ["Zed_0001.JPG", "Zed_0002.jpg"]


def test_scan_identities_missing_root(tmp_path):
    with pytest.raises(NotADirectoryError):
        scan_identities(tmp_path / "nope")


def _fake_identities() -> dict[str, list[Path]]:
    counts = {"alice": 3, "bob": 2, "carol": 1, "dave": 1, "erin": 1, "frank": 1}
    return {n: [Path(n) / f"{n}_{i:04d}.jpg" for i in range(1, k + 1)] for n, k in counts.items()}


def test_identify_split_one_shot():
    ids = _fake_identities()
    split = identify_split(ids, shots=1, distractor_share=0.5, seed=0)
    assert isinstance(split, IdentifySplit)
    enrolled = [name for name, _ in split.gallery]
    assert enrolled == sorted(enrolled)
    assert ("alice", ids["alice"][0]) in split.gallery
    assert ("bob", ids["bob"][0]) in split.gallery
    assert split.genuine_probes == [
        ("alice", ids["alice"][1]),
        ("alice", ids["alice"][2]),
        ("bob", ids["bob"][1]),
    ]
    distractors = set(enrolled) - {"alice", "bob"}
    impostors = {name for name, _ in split.impostor_probes}
    assert len(distractors) == 2 and len(impostors) == 2
    assert distractors | impostors == {"carol", "dave", "erin", "frank"}
    assert not distractors & impostors
    # no probe image is also enrolled
    assert not {p for _, p in split.gallery} & {p for _, p in split.genuine_probes}


def test_identify_split_is_seeded():
    ids = _fake_identities()
    assert identify_split(ids, seed=3) == identify_split(ids, seed=3)
    draws = {
        frozenset(n for n, _ in identify_split(ids, seed=s).impostor_probes) for s in range(20)
    }
    assert len(draws) > 1


def test_identify_split_shares_and_shots():
    ids = _fake_identities()
    none = identify_split(ids, distractor_share=0.0)
    assert {n for n, _ in none.gallery} == {"alice", "bob"}
    assert len(none.impostor_probes) == 4
    everyone = identify_split(ids, distractor_share=1.0)
    assert everyone.impostor_probes == []
    assert len(everyone.gallery) == 6
    two = identify_split(ids, shots=2, distractor_share=0.0)
    assert two.gallery == [("alice", ids["alice"][0]), ("alice", ids["alice"][1])]
    assert two.genuine_probes == [("alice", ids["alice"][2])]
    # bob has too few images for two shots: every one of his images is an impostor probe
    assert [p for n, p in two.impostor_probes if n == "bob"] == ids["bob"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shots": 0}, "shots"),
        ({"distractor_share": 1.5}, "distractor_share"),
        ({"distractor_share": -0.1}, "distractor_share"),
    ],
)
def test_identify_split_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        identify_split(_fake_identities(), **kwargs)


def test_plain_pairs_are_paths_and_a_label_with_folds_within_each_class(tmp_path):
    text = "# my pairs\n" + "".join(f"p/a{i}.jpg\tp/b{i}.jpg\t{i % 2}\n" for i in range(40))
    pairs = read_pairs(_write(tmp_path, text), tmp_path)
    assert len(pairs) == 40
    assert pairs[0] == Pair(tmp_path / "p/a0.jpg", tmp_path / "p/b0.jpg", False, 0)
    assert pairs[1].same and pairs[1].path_a == tmp_path / "p/a1.jpg"
    for label in (True, False):
        folds = [p.fold for p in pairs if p.same is label]
        assert folds == sorted(folds) and sorted(set(folds)) == list(range(10))


@pytest.mark.parametrize("line", ["a.jpg\tb.jpg\t2", "a.jpg\tb.jpg", "a.jpg b.jpg 1"])
def test_malformed_plain_pairs_name_file_and_line(tmp_path, line):
    path = _write(tmp_path, f"a.jpg\tb.jpg\t1\n{line}\n")
    with pytest.raises(ValueError, match="path_a<TAB>path_b<TAB>1") as info:
        read_pairs(path, tmp_path)
    assert f"{path}:2:" in str(info.value)


def test_pair_people_are_the_folders_under_root(tmp_path):
    pairs = [Pair(tmp_path / "Ann" / "1.jpg", tmp_path / "Bo" / "x" / "2.jpg", False, 0)]
    assert pair_people(pairs, tmp_path) == {"Ann", "Bo"}
