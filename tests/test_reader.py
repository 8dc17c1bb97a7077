"""Input listing and output keys: trees, collisions, hidden files, loops, stdin."""

from __future__ import annotations

import os
from pathlib import Path

from bgcut.pipeline.reader import list_sources


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def keys(listing) -> list[str]:  # noqa: ANN001
    return [s.key for s in listing.sources]


def test_folder_tree_keys(tmp_path: Path) -> None:
    touch(tmp_path / "in" / "a.jpg")
    touch(tmp_path / "in" / "sub" / "b.PNG")
    touch(tmp_path / "in" / "notes.txt")
    touch(tmp_path / "in" / ".hidden.jpg")
    touch(tmp_path / "in" / ".cache" / "c.jpg")
    assert keys(list_sources([str(tmp_path / "in")])) == ["a", "sub/b"]


def test_same_stem_keeps_full_names(tmp_path: Path) -> None:
    touch(tmp_path / "in" / "a.jpg")
    touch(tmp_path / "in" / "a.png")
    touch(tmp_path / "in" / "A.webp")
    touch(tmp_path / "in" / "b.jpg")
    assert keys(list_sources([str(tmp_path / "in")])) == ["A.webp", "a.jpg", "a.png", "b"]


def test_inputs_whose_full_names_are_the_same_fail_but_the_first(tmp_path: Path) -> None:
    """d1/x.jpg and d2/x.jpg given as two folders both became x.jpg.png: the second output was
    written over the first, and both were counted done."""
    touch(tmp_path / "d1" / "x.jpg")
    touch(tmp_path / "d2" / "x.jpg")
    touch(tmp_path / "d2" / "y.jpg")
    listing = list_sources([str(tmp_path / "d1"), str(tmp_path / "d2")])
    assert keys(listing) == ["x.jpg", "y"]
    assert listing.sources[0].path == str(tmp_path / "d1" / "x.jpg")
    assert listing.errors == [
        (
            str(tmp_path / "d2" / "x.jpg"),
            f"its output would take the name of {tmp_path / 'd1' / 'x.jpg'}'s (x.jpg); "
            "rename one of them, or cut them out into separate -o folders",
        )
    ]
    # A stem that is another file's full name: a.jpg.webp's key is a.jpg, as a.jpg's is beside a.png.
    touch(tmp_path / "e" / "a.jpg")
    touch(tmp_path / "e" / "a.png")
    touch(tmp_path / "e" / "a.jpg.webp")
    listing = list_sources([str(tmp_path / "e")])
    assert sorted(keys(listing)) == ["a.jpg", "a.png"] and len(listing.errors) == 1


def test_output_folder_inside_input_is_skipped(tmp_path: Path) -> None:
    touch(tmp_path / "in" / "a.jpg")
    touch(tmp_path / "in" / "out" / "a.png")
    assert keys(list_sources([str(tmp_path / "in")], output_dir=tmp_path / "in" / "out")) == ["a"]


def test_symlink_loop_is_not_followed_forever(tmp_path: Path) -> None:
    touch(tmp_path / "in" / "sub" / "a.jpg")
    os.symlink(tmp_path / "in", tmp_path / "in" / "sub" / "loop")
    listing = list_sources([str(tmp_path / "in")])
    assert keys(listing) == ["sub/a"]
    assert any("symlink loop" in w for w in listing.warnings)


def test_files_and_stdin_keep_relative_folders(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "x" / "p.jpg")
    touch(tmp_path / "y" / "p.jpg")
    listing = list_sources(["-"], stdin_lines=["./x/p.jpg\n", "y/p.jpg\n", "\n"])
    assert keys(listing) == ["x/p", "y/p"]
    assert keys(list_sources([str(tmp_path / "x" / "p.jpg")])) == ["p"]  # absolute: file name only


def test_missing_input_is_an_error_row(tmp_path: Path) -> None:
    listing = list_sources([str(tmp_path / "nope.jpg")])
    assert listing.sources == [] and listing.errors == [(str(tmp_path / "nope.jpg"), "no such file or folder")]


def test_unicode_and_spaces(tmp_path: Path) -> None:
    touch(tmp_path / "in" / "mon été 🌞.jpg")
    assert keys(list_sources([str(tmp_path / "in")])) == ["mon été 🌞"]


def test_duplicate_inputs_are_read_once(tmp_path: Path) -> None:
    f = touch(tmp_path / "in" / "a.jpg")
    assert keys(list_sources([str(tmp_path / "in"), str(f)])) == ["a"]


def test_a_link_to_a_file_already_found_is_a_duplicate_and_the_file_keeps_its_name(tmp_path: Path) -> None:
    """The fuzz corpus's links/target.jpg: its symlink was taken, the real file got no row."""
    root = tmp_path / "in"
    (root / "real").mkdir(parents=True)
    (root / "links").mkdir()
    (root / "real" / "target.jpg").write_bytes(b"x")
    (root / "links" / "target.jpg").symlink_to(root / "real" / "target.jpg")  # found first: "links" < "real"
    listing = list_sources([str(root)])
    assert [s.key for s in listing.sources] == ["real/target"]
    assert listing.passed_over == [
        (str(root / "links" / "target.jpg"),
         f"the same file as {root / 'real' / 'target.jpg'}, which is read under that name"),
    ]  # fmt: skip


def test_paths_are_written_as_given_under_the_folder_and_links_are_found_by_their_real_files(
    tmp_path: Path, monkeypatch
) -> None:  # noqa: ANN001
    """The walk writes each file's path with strings, no ``Path`` per file: ``.`` gives ``a.jpg``,
    not ``./a.jpg``; a file reached again through a linked folder is the same file, found by its
    folder's real path."""
    monkeypatch.chdir(tmp_path)
    touch(tmp_path / "a.jpg")
    touch(tmp_path / "real" / "b.jpg")
    (tmp_path / "via").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "c.jpg").symlink_to(tmp_path / "a.jpg")
    listing = list_sources(["."])
    assert [(s.path, s.key, s.display) for s in listing.sources] == [
        ("a.jpg", "a", "a.jpg"),
        ("real/b.jpg", "real/b", "real/b.jpg"),
    ]
    assert listing.passed_over == [("c.jpg", "the same file as a.jpg, which is read under that name")]
    listing = list_sources(["via", "real"])
    assert [s.path for s in listing.sources] == ["via/b.jpg"]
    assert listing.passed_over == [("real/b.jpg", "the same file as via/b.jpg, which is read under that name")]
