"""Item text of a licensed scale comes from a local file the licence holder supplies."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from xinshu.declarations.registry import load_declarations
from xinshu.errors import DeclarationsInvalid
from xinshu.services import PROJECT_ROOT, load_plugins


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for folder in ("instruments", "rules"):
        shutil.copytree(PROJECT_ROOT / folder, tmp_path / folder)
    return tmp_path


def _load(root: Path):
    _pm, scorers, channels = load_plugins({})
    return load_declarations([root], scorers, channels)


def test_structure_only_without_the_file(root):
    mht = _load(root).instruments["mht"]
    assert mht.text_source == "local_file" and mht.items[0].text == {}


def test_local_text_is_merged_and_validated(root):
    texts = root / "local_texts"
    texts.mkdir()
    (texts / "mht.yaml").write_text("mht_1: {zh: 示例题目一, en: Sample item one}\n", "utf-8")
    assert _load(root).instruments["mht"].item("mht_1").text == {"zh": "示例题目一", "en": "Sample item one"}
    (texts / "mht.yaml").write_text("mht_1: {zh: 示例}\nmht_999: {zh: 多余}\n", "utf-8")
    with pytest.raises(DeclarationsInvalid) as info:
        _load(root)
    assert [str(e) for e in info.value.errors] == ["local_texts/mht.yaml:2: mht_999: no item 'mht_999' in mht"]
