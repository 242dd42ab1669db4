"""rock.transfer's caps on a tar stream that claims (and would deliver) 50 GB: refused from the header, having read
only a few blocks; a download spooled only up to its cap; small transfers intact."""
from __future__ import annotations

import io
import itertools
import tarfile
from pathlib import Path

import pytest

from rock.transfer import FileTooLarge, extract_to, read_single_member, single_file_tar

HUGE = 50 * 1024**3


def endless_member_stream(pulled: list[int]):
    """The tar header of a 50 GB file, then zeros for ever (as get_archive streams a sparse file)."""
    info = tarfile.TarInfo("big.bin")
    info.size = HUGE
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    for _ in itertools.count():
        pulled[0] += 1
        yield b"\0" * 65536


def test_a_huge_member_is_refused_from_its_header():
    pulled = [0]
    with pytest.raises(FileTooLarge, match=str(HUGE)):
        read_single_member(endless_member_stream(pulled), "/w/big.bin", limit=1024 * 1024)
    assert pulled[0] <= 2  # nothing like the data was read


def test_a_download_is_spooled_only_up_to_its_cap(tmp_path: Path):
    pulled = [0]
    with pytest.raises(FileTooLarge):
        extract_to(endless_member_stream(pulled), "/w/big.bin", tmp_path / "big.bin", limit=4 * 1024 * 1024)
    assert pulled[0] <= 4 * 16 + 1 and not (tmp_path / "big.bin").exists()


def test_small_transfers_are_intact(tmp_path: Path):
    archive = single_file_tar("f.txt", b"hello", 0o644, 1000, 1000)
    chunks = [archive[i:i + 100] for i in range(0, len(archive), 100)]
    assert read_single_member(iter(chunks), "/w/f.txt") == b"hello"
    extract_to(iter(chunks), "/w/f.txt", tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_bytes() == b"hello"
    with pytest.raises(FileTooLarge):
        read_single_member(iter(chunks), "/w/f.txt", limit=4)
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        tar.addfile(_directory("d"))
    with pytest.raises(IsADirectoryError):
        read_single_member([stream.getvalue()], "/w/d")


def _directory(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info
