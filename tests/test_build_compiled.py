"""The compiled simulator build refuses to be measured once the sources moved on from it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH_DIR))

import build_compiled as build  # noqa: E402


@pytest.fixture
def trees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    package = tmp_path / "src" / "sapwood"
    (package / "core").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "core" / "ring.py").write_text("RING_SIZE = 64\n")
    compiled_root = tmp_path / "build" / "compiled"
    monkeypatch.setattr(build, "SOURCE_PACKAGE", package)
    monkeypatch.setattr(build, "COMPILED_ROOT", compiled_root)
    return package, compiled_root


def _record(compiled_root: Path) -> None:
    (compiled_root / "sapwood").mkdir(parents=True)
    (compiled_root / build.SOURCES_DIGEST_FILE).write_text(build.sources_digest() + "\n")


def test_no_build_is_reported(trees: tuple[Path, Path]) -> None:
    assert "no compiled build" in build.stale_build_problem()


def test_a_build_of_the_current_sources_is_accepted(trees: tuple[Path, Path]) -> None:
    _record(trees[1])
    assert build.stale_build_problem() is None


@pytest.mark.parametrize("change", ["edit", "add", "rename"])
def test_a_build_of_other_sources_is_refused(trees: tuple[Path, Path], change: str) -> None:
    package, compiled_root = trees
    _record(compiled_root)
    ring = package / "core" / "ring.py"
    if change == "edit":
        ring.write_text("RING_SIZE = 128\n")
    elif change == "add":
        (package / "core" / "claim.py").write_text("")
    else:
        ring.rename(package / "core" / "ring2.py")
    assert "older than src/sapwood" in build.stale_build_problem()


def test_a_build_without_its_record_is_refused(trees: tuple[Path, Path]) -> None:
    (trees[1] / "sapwood").mkdir(parents=True)
    assert "older than src/sapwood" in build.stale_build_problem()
