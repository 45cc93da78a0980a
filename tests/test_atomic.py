"""Crash-safe writes: the target holds the old bytes or the new ones, never a part, whatever happens mid-write."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lmfs.atomic import (
    append_jsonl_atomic,
    atomic_open,
    atomic_path,
    write_json_atomic,
    write_text_atomic,
)


@pytest.fixture
def umask_027() -> Iterator[int]:
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_text_content_and_umask_permissions(tmp_path: Path, umask_027: int) -> None:
    path = tmp_path / "a.txt"
    with atomic_open(path) as fh:
        fh.write("héllo\n")
    assert path.read_bytes() == "héllo\n".encode()  # text mode writes UTF-8 by default
    assert _mode(path) == 0o666 & ~umask_027  # as a plain open() would make it, not mkstemp's 0600
    assert os.listdir(tmp_path) == ["a.txt"]


def test_replacing_keeps_the_usual_permissions(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    with open(path, "w") as fh:
        fh.write("old")
    plain = _mode(path)
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write("new")
    assert path.read_text() == "new" and _mode(path) == plain


def test_binary_mode(tmp_path: Path) -> None:
    path = tmp_path / "b.bin"
    data = bytes(range(256)) * 1000
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    assert path.read_bytes() == data


def test_parent_folders_are_created(tmp_path: Path) -> None:
    path = tmp_path / "x" / "y" / "z.json"
    with atomic_open(path) as fh:
        json.dump({"k": 1}, fh)
    assert json.loads(path.read_text()) == {"k": 1}


def test_temp_file_is_hidden_in_the_target_folder(tmp_path: Path) -> None:
    path = tmp_path / "out" / "data.json"
    with atomic_open(path, "wb") as fh:
        fh.write(b"x")
        (tmp,) = _hidden(path.parent)
        assert not path.exists()  # nothing visible until the block succeeds
        assert tmp.startswith(".data.json.tmp-") and tmp.endswith(".json")
        assert (path.parent / tmp).stat().st_dev == path.parent.stat().st_dev
    assert os.listdir(path.parent) == ["data.json"]


def test_exception_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "keep.bin"
    old = os.urandom(4096)
    path.write_bytes(old)
    before = path.stat()
    with pytest.raises(RuntimeError, match="mid-write"), atomic_open(path, "wb") as fh:
        fh.write(b"partial new content")
        fh.flush()
        raise RuntimeError("mid-write")
    assert path.read_bytes() == old
    assert path.stat().st_ino == before.st_ino  # the very same file, not a rewritten copy
    assert os.listdir(tmp_path) == ["keep.bin"]


def test_exception_without_an_old_file_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), atomic_open(tmp_path / "sub" / "new.txt") as fh:
        fh.write("x")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path / "sub") == []


def test_block_may_close_the_file_itself(tmp_path: Path) -> None:
    path = tmp_path / "c.txt"
    with atomic_open(path) as fh:
        fh.write("done")
        fh.close()
    assert path.read_text() == "done"
    assert os.listdir(tmp_path) == ["c.txt"]


@pytest.mark.parametrize("mode", ["a", "r", "x", "w+", "ab", "rb"])
def test_other_modes_are_refused(tmp_path: Path, mode: str) -> None:
    with pytest.raises(ValueError, match="mode"), atomic_open(tmp_path / "f", mode):
        pass
    assert os.listdir(tmp_path) == []


def test_binary_mode_refuses_an_encoding(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="encoding"), atomic_open(tmp_path / "f", "wb", encoding="utf-8"):
        pass
    assert os.listdir(tmp_path) == []


_CHILD = textwrap.dedent(
    """
    import sys, time
    from lmfs.atomic import atomic_open

    with atomic_open(sys.argv[1], "wb") as fh:
        for _ in range(16):
            fh.write(b"N" * (1 << 20))
        fh.flush()
        print("writing", flush=True)
        time.sleep(120)  # killed here, half-way through the file
        fh.write(b"never")
    """
)


def _kill_mid_write(path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def test_sigkill_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    old = os.urandom(1 << 20)
    path.write_bytes(old)
    _kill_mid_write(path)
    assert path.read_bytes() == old
    # the torn bytes only ever reached the hidden temp file beside it
    (tmp,) = _hidden(tmp_path)
    assert tmp.startswith(".big.bin.tmp-") and (tmp_path / tmp).stat().st_size == 16 << 20


def test_sigkill_mid_write_without_an_old_file_leaves_no_target(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    _kill_mid_write(path)
    assert not path.exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []


def test_atomic_path_for_libraries_that_want_a_name(tmp_path: Path, umask_027: int) -> None:
    path = tmp_path / "ids.npy"
    with atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".ids.npy.tmp-")
        assert tmp.suffix == ".npy"  # so np.save writes the name given instead of appending ".npy"
        np.save(tmp, np.arange(5, dtype=np.uint16))
    np.testing.assert_array_equal(np.load(path), np.arange(5))
    assert os.listdir(tmp_path) == ["ids.npy"]
    assert _mode(path) == 0o666 & ~umask_027


def test_atomic_path_exception_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "ids.npy"
    np.save(path, np.arange(3))
    old = path.read_bytes()
    with pytest.raises(OSError, match="simulated"), atomic_path(path) as tmp:
        np.save(tmp, np.arange(1000))
        raise OSError("disk full (simulated)")
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["ids.npy"]


def test_np_save_through_a_file_object(tmp_path: Path) -> None:
    path = tmp_path / "ids"  # a file object keeps the exact name: no ".npy" is appended
    with atomic_open(path, "wb") as fh:
        np.save(fh, np.arange(4))
    np.testing.assert_array_equal(np.load(path), np.arange(4))
    assert os.listdir(tmp_path) == ["ids"]


def test_wrappers(tmp_path: Path) -> None:
    write_text_atomic(tmp_path / "t.txt", "a\nb\n")
    assert (tmp_path / "t.txt").read_text() == "a\nb\n"
    write_json_atomic(tmp_path / "d" / "j.json", {"x": 0.5}, indent=2)
    assert (tmp_path / "d" / "j.json").read_text() == json.dumps({"x": 0.5}, indent=2) + "\n"
    (tmp_path / "r.jsonl").write_text('{"a": 1}')  # no final newline
    append_jsonl_atomic(tmp_path / "r.jsonl", [{"b": 2}, {"c": 3}])
    assert (tmp_path / "r.jsonl").read_text() == '{"a": 1}\n{"b": 2}\n{"c": 3}\n'
    assert sorted(os.listdir(tmp_path)) == ["d", "r.jsonl", "t.txt"]
