"""ImageNet ground truth: the ILSVRC2012 devkit's class numbering, validation labels and class names."""

from __future__ import annotations

import csv
import io
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selectivity_eval.core.errors import UserInputError
from selectivity_eval.plugins.datasets.image_files import imagenet_index

WNID = re.compile(r"n\d{8}")
VAL_IMAGE = re.compile(r"ILSVRC2012_val_(\d{8})")
DEVKIT_META = "meta.mat"
DEVKIT_GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
DEVKIT_CLSLOC = "map_clsloc.txt"


@dataclass
class Devkit:
    """What the ILSVRC2012 devkit says: ILSVRC2012_ID -> (wnid, words), and its validation ground truth."""

    source: str
    synsets: dict[int, tuple[str, str]]
    ground_truth: str | None


def read_devkit(path: str) -> Devkit:
    """The devkit's class numbering (and its validation ground truth, when present).

    ``path`` is a devkit folder, its tarball, its ``data/meta.mat``, or a ``map_clsloc.txt``
    (``n02119789 1 kit_fox`` per line, the same numbering, from the later ILSVRC devkits).
    """
    location = Path(path).expanduser()
    found: dict[str, bytes] = {}
    wanted = (DEVKIT_META, DEVKIT_CLSLOC, DEVKIT_GROUND_TRUTH)
    if location.is_dir():
        for data in (location / "data", location / "ILSVRC2012_devkit_t12" / "data", location):
            if (data / DEVKIT_META).is_file() or (data / DEVKIT_CLSLOC).is_file():
                found = {name: (data / name).read_bytes() for name in wanted if (data / name).is_file()}
                break
    elif location.suffix.lower() in (".mat", ".txt"):
        found[DEVKIT_META if location.suffix.lower() == ".mat" else DEVKIT_CLSLOC] = location.read_bytes()
        if (location.parent / DEVKIT_GROUND_TRUTH).is_file():
            found[DEVKIT_GROUND_TRUTH] = (location.parent / DEVKIT_GROUND_TRUTH).read_bytes()
    elif tarfile.is_tarfile(location):
        with tarfile.open(location) as archive:
            for member in archive.getmembers():
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted and base not in found:
                    found[base] = archive.extractfile(member).read()
    if DEVKIT_META in found:
        synsets = parse_meta_mat(found[DEVKIT_META], path)
    elif DEVKIT_CLSLOC in found:
        synsets = parse_map_clsloc(found[DEVKIT_CLSLOC].decode("utf-8-sig"), path)
    else:
        raise UserInputError(
            f"devkit {path!r}: no {DEVKIT_META} found. Give the ILSVRC2012 devkit folder (ILSVRC2012_devkit_t12), "
            f"its ILSVRC2012_devkit_t12.tar.gz, its data/{DEVKIT_META}, or a {DEVKIT_CLSLOC}."
        )
    truth = found.get(DEVKIT_GROUND_TRUTH)
    return Devkit(path, synsets, truth.decode("utf-8-sig") if truth is not None else None)


def _checked_numbering(table: dict[int, tuple[str, str]], source: str, file: str) -> dict[int, tuple[str, str]]:
    known = imagenet_index()
    if sorted(table) != list(range(1, 1001)) or sorted(wnid for wnid, _ in table.values()) != list(known):
        raise UserInputError(
            f"devkit {source!r}: {file} does not map the ILSVRC2012_IDs 1..1000 to the 1,000 ImageNet-1k "
            "WordNet ids; is it from the ILSVRC2012 devkit (ILSVRC2012_devkit_t12)?"
        )
    return table


def parse_meta_mat(content: bytes, source: str) -> dict[int, tuple[str, str]]:
    """ILSVRC2012_ID -> (wnid, words) of the 1,000 leaf classes in the devkit's meta.mat."""
    from scipy.io import loadmat

    try:
        synsets = np.atleast_1d(loadmat(io.BytesIO(content), squeeze_me=True)["synsets"])
        names = synsets.dtype.names or ()
        if "ILSVRC2012_ID" not in names or "WNID" not in names:
            raise ValueError("its `synsets` lack the fields ILSVRC2012_ID and WNID")
        words = synsets["words"] if "words" in names else [""] * len(synsets)
        table = {
            int(number): (str(wnid), str(word))
            for number, wnid, word in zip(synsets["ILSVRC2012_ID"], synsets["WNID"], words)
            if 1 <= int(number) <= 1000
        }
    except (ValueError, KeyError, TypeError, OSError, NotImplementedError) as error:
        raise UserInputError(f"devkit {source!r}: cannot read {DEVKIT_META}: {error}") from None
    return _checked_numbering(table, source, DEVKIT_META)


def parse_map_clsloc(text: str, source: str) -> dict[int, tuple[str, str]]:
    """ILSVRC2012_ID -> (wnid, name) from map_clsloc.txt (``n02119789 1 kit_fox``)."""
    table: dict[int, tuple[str, str]] = {}
    for line_number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < 2 or not WNID.fullmatch(tokens[0]) or not tokens[1].isdigit():
            raise UserInputError(f"devkit {source!r}, {DEVKIT_CLSLOC} line {line_number}: expected 'wnid number name'")
        table[int(tokens[1])] = (tokens[0], " ".join(tokens[2:]).replace("_", " "))
    return _checked_numbering(table, source, DEVKIT_CLSLOC)


def parse_ground_truth(text: str, source: str, devkit: Devkit | None) -> tuple[dict[int, str], str]:
    """Image number (the 8 digits of ILSVRC2012_val_NNNNNNNN) -> wnid, and the format that was read.

    Formats: Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString``, the first token of the
    prediction string is the wnid); the devkit's ground truth (one ILSVRC2012_ID per line, line k
    for image k, mapped to wnids through the devkit's meta.mat); a wnid per line (line k for image
    k), optionally preceded by the image's file name.
    """
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise UserInputError(f"ground truth {source!r} is empty.")

    def bad(line_number: int, why: str) -> UserInputError:
        return UserInputError(f"ground truth {source!r}, line {line_number}: {why}")

    truth: dict[int, str] = {}
    if lines[0][1].startswith("ImageId"):
        reader = csv.DictReader(text.splitlines())
        if not {"ImageId", "PredictionString"} <= set(reader.fieldnames or ()):
            raise bad(1, "a CSV ground truth needs the columns ImageId and PredictionString (LOC_val_solution.csv)")
        for row in reader:
            line_number = reader.line_num
            match = VAL_IMAGE.fullmatch(Path((row["ImageId"] or "").strip()).stem)
            tokens = (row["PredictionString"] or "").split()
            if match is None:
                raise bad(line_number, f"ImageId {row['ImageId']!r} is not ILSVRC2012_val_NNNNNNNN")
            if not tokens or not WNID.fullmatch(tokens[0]):
                raise bad(line_number, "PredictionString does not start with a WordNet id (nNNNNNNNN)")
            truth[int(match.group(1))] = tokens[0]
        return truth, "LOC_val_solution.csv"
    if all(line.isdigit() for _, line in lines):
        if devkit is None:
            raise UserInputError(
                f"ground truth {source!r} holds ILSVRC2012_IDs (the devkit's class numbers, in the devkit's own "
                "order, not torchvision's); give `devkit` (the ILSVRC2012 devkit folder, its .tar.gz or its "
                "data/meta.mat) so they can be mapped to WordNet ids."
            )
        for image, (line_number, line) in enumerate(lines, 1):
            if int(line) not in devkit.synsets:
                raise bad(line_number, f"ILSVRC2012_ID {line} is not one of 1..1000")
            truth[image] = devkit.synsets[int(line)][0]
        return truth, "ILSVRC2012_validation_ground_truth.txt"
    for image, (line_number, line) in enumerate(lines, 1):
        tokens = line.replace(",", " ").split()
        if len(tokens) == 1 and WNID.fullmatch(tokens[0]):
            truth[image] = tokens[0]
        elif len(tokens) == 2 and WNID.fullmatch(tokens[1]) and VAL_IMAGE.fullmatch(Path(tokens[0]).stem):
            truth[int(VAL_IMAGE.fullmatch(Path(tokens[0]).stem).group(1))] = tokens[1]
        else:
            raise bad(
                line_number,
                f"{line[:60]!r} is not understood; expected LOC_val_solution.csv, the devkit's ground truth "
                "(one ILSVRC2012_ID per line) or one WordNet id per line (optionally after the file name)",
            )
    return truth, "wnid per image"


def read_synset_mapping(path: str) -> dict[str, str]:
    """wnid -> names from LOC_synset_mapping.txt (``n01440764 tench, Tinca tinca``)."""
    names: dict[str, str] = {}
    for line_number, line in enumerate(Path(path).expanduser().read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        wnid, _, name = line.strip().partition(" ")
        if not WNID.fullmatch(wnid):
            raise UserInputError(f"synset_mapping {path!r}, line {line_number}: {wnid!r} is not a WordNet id")
        names[wnid] = name.strip(" :") or wnid
    unknown = sorted(set(names) - set(imagenet_index()))
    if unknown:
        raise UserInputError(
            f"synset_mapping {path!r} names {len(unknown)} WordNet id(s) outside ImageNet-1k, e.g. {unknown[0]}."
        )
    return names
