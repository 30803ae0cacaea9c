"""``facesearch data check``: the table of a good data set, and one line with exit 2 for an unusable one."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.search.cli.test_cli_errors import cli, one_line_error

from facenet.data.cache import CacheSpec, cache_size
from facenet.data.datacheck import check_data


@pytest.fixture
def data(synth_data, tmp_path) -> Path:
    return Path(shutil.copytree(synth_data, tmp_path / "data"))


def value(report, where: str, check: str) -> str:
    return next(v for w, c, v in report.rows if w == where and c == check)


def test_a_good_data_set_reports_every_set_and_the_disk(data, tmp_path):
    report = check_data(data, (32, 40), CacheSpec(tmp_path / "cache"), keep_checkpoints=2)
    assert report.unusable == "" and report.problems == []
    n = len(list((data / "train1").rglob("*.jpg")))
    assert value(report, "train1", "images") == f"{n:,}"
    assert value(report, "train1", "identities") == str(len(list((data / "train1").iterdir())))
    assert value(report, "train1", "images per identity") == "min 8 / median 8 / max 8"
    assert value(report, "train1", "unreadable files") == "0"
    raw_kb = n * cache_size(32) ** 2 * 3 / 1e3
    assert f"raw {raw_kb:,.1f} kB" in value(report, "train1", "cache for 32 px (37 px stored)")
    assert value(report, "val/val_pairs.csv", "pairs").startswith("200 (100 same person")
    assert value(report, "disk", "checkpoints kept").startswith("2 x ")
    assert "fits in" in value(report, "disk", "projected total")


def test_cli_prints_one_table(data, tmp_path):
    done = cli("data", "check", str(data), "--resolution", "32", "--cache-dir", str(tmp_path / "c"))
    assert done.returncode == 0, done.stderr
    assert "train1" in done.stdout and "cache for 32 px" in done.stdout and "checkpoints kept" in done.stdout
    assert not (tmp_path / "c").exists(), "a check must not build or create anything"


def test_a_truncated_training_image_is_a_warning(data):
    victim = data / "train1" / "id00000" / "00003.jpg"
    victim.write_bytes(victim.read_bytes()[:300])
    report = check_data(data / "train1", (32,))
    assert report.unusable == "" and value(report, "train1", "unreadable files") == "1"
    assert any("training skips them" in p and "00003.jpg" in p for p in report.problems)


def break_pair_image(data: Path) -> str:
    first = (data / "val" / "val_pairs.csv").read_text().splitlines()[0].split(",")[1]
    (data / "val" / first).write_bytes(b"\xff\xd8\xff not a jpeg")
    return first


@pytest.mark.parametrize("damage,fragments", [
    (lambda d: (d / "train1" / "id99999").mkdir(), ["id99999", "holds no .jpg/.png images"]),
    (lambda d: (d / "val" / "val_pairs.csv").write_text("1,id00000/00000.jpg,nobody/here.jpg\n"),
     ["val_pairs.csv:1", "not found"]),
    (lambda d: break_pair_image(d), ["unreadable image", "drop their pairs"]),
    (lambda d: [shutil.rmtree(p) for p in d.iterdir()], ["no training folder", "no pair list"]),
    (lambda d: shutil.rmtree(d), ["folder does not exist"]),
])
def test_an_unusable_data_set_exits_2_with_one_line(data, damage, fragments):
    damage(data)
    done = cli("data", "check", str(data), "--resolution", "32")
    one_line_error(done, *fragments)
