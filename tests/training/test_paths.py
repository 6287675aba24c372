"""training.paths: a path built from input never leaves its root, in any spelling, through any symlink."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from training.paths import (
    UnsafePathError,
    check_tree,
    inside,
    owner_dir_name,
    relative_parts,
    remove_inside,
    replace_inside,
)


@pytest.mark.parametrize(
    "text",
    ["", "..", "../x", "a/../../x", "a/./b", "a//b", "/etc/passwd", "C:/x", "a\\..\\b", "a\x00b", "./a"],
)
def test_what_could_climb_or_jump_is_refused(text: str) -> None:
    with pytest.raises(UnsafePathError):
        relative_parts(text)


def test_plain_relative_paths_are_split_into_their_segments() -> None:
    assert relative_parts("meta/info.json") == ("meta", "info.json")
    assert relative_parts("data/") == ("data",)
    assert relative_parts("..hidden/x..y") == ("..hidden", "x..y")


def test_inside_refuses_a_symlink_on_the_way_out(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    assert inside(root, "a", "b/c") == root / "a" / "b" / "c"
    with pytest.raises(UnsafePathError, match="leaves its directory"):
        inside(root, "link/keys")


def test_renames_and_deletions_outside_the_root_are_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (outside / "keep").write_text("x")
    (root / "sub" / "escape").symlink_to(outside)
    for path in (outside, root, root / "sub" / "escape" / "keep"):
        with pytest.raises(UnsafePathError):
            remove_inside(root, path)
        with pytest.raises(UnsafePathError):
            replace_inside(root, root / "sub", path)
    remove_inside(root, root / "sub" / "escape")  # the link itself is inside: removed, its target untouched
    assert not os.path.lexists(root / "sub" / "escape") and (outside / "keep").read_text() == "x"


def test_check_tree_sums_files_and_names_links_out_and_special_files(tmp_path: Path) -> None:
    (tmp_path / "ds" / "meta").mkdir(parents=True)
    (tmp_path / "ds" / "meta" / "info.json").write_text("12345")
    (tmp_path / "ds" / "alias.json").symlink_to(tmp_path / "ds" / "meta" / "info.json")
    assert check_tree(tmp_path / "ds") == 5
    os.mkfifo(tmp_path / "ds" / "meta" / "pipe")
    with pytest.raises(UnsafePathError, match="meta/pipe is not a regular file"):
        check_tree(tmp_path / "ds")
    os.unlink(tmp_path / "ds" / "meta" / "pipe")
    (tmp_path / "ds" / "data").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError, match="data is a symlink that points outside"):
        check_tree(tmp_path / "ds")


def test_owner_dir_names_are_fixed_width_whatever_the_id() -> None:
    names = {owner_dir_name(owner) for owner in ("user_alice", "../../keys", "a/b", "")}
    assert len(names) == 4 and all(len(name) == 33 and name.isalnum() for name in names)
