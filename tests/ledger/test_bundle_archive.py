"""An audit bundle packed into one tar.gz and unpacked without trusting it: the round trip keeps
every file; too many entries, an expansion past the cap, a repeated name, a link or a name that
leaves the folder are refused naming the entry, and nothing is written outside the target."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from ledger import bundle_archive
from ledger.errors import AuditError


def _archive(entries: list[tuple[str, bytes]], extra: list[tarfile.TarInfo] | None = None) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info)
    out.seek(0)
    return out


def test_pack_then_unpack_gives_back_every_file(tmp_path: Path) -> None:
    """The files of a folder come back byte for byte, under one top folder in the archive."""
    source = tmp_path / "bundle"
    source.mkdir()
    (source / "checkpoint").write_bytes(b"note\n")
    (source / "transfers.jsonl").write_bytes(b'{"seq":0}\n')
    out = io.BytesIO()
    assert bundle_archive.pack(source, out, "ledger-a-2026-12") == ["checkpoint", "transfers.jsonl"]
    out.seek(0)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert sorted(tar.getnames()) == ["ledger-a-2026-12/checkpoint", "ledger-a-2026-12/transfers.jsonl"]
    target = tmp_path / "out"
    target.mkdir()
    assert sorted(bundle_archive.unpack(out, target)) == ["checkpoint", "transfers.jsonl"]
    assert (target / "transfers.jsonl").read_bytes() == b'{"seq":0}\n'
    with pytest.raises(ValueError, match="plain folder name"):
        bundle_archive.pack(source, io.BytesIO(), "../up")


@pytest.mark.parametrize(
    ("entries", "named"),
    [
        ([(f"f{i}", b"x") for i in range(bundle_archive.MAX_MEMBERS + 1)], "archive"),
        ([("checkpoint", b"a"), ("checkpoint", b"b")], "checkpoint"),
        ([("a/../../x", b"a")], "a/../../x"),
        ([("/etc/x", b"a")], "/etc/x"),
        ([(".hidden", b"a")], ".hidden"),
    ],
)
def test_bad_entries_are_refused_naming_them(
    tmp_path: Path, entries: list[tuple[str, bytes]], named: str
) -> None:
    """Each bad archive raises an AuditError naming the entry (or the archive)."""
    with pytest.raises(AuditError) as refused:
        bundle_archive.unpack(_archive(entries), tmp_path)
    assert refused.value.where == named
    assert not (tmp_path.parent / "x").exists()


def test_links_and_devices_are_refused(tmp_path: Path) -> None:
    """A hard link or a FIFO in the archive is refused before anything of it is written."""
    for kind in (tarfile.LNKTYPE, tarfile.FIFOTYPE):
        info = tarfile.TarInfo("bundle/odd")
        info.type = kind
        info.linkname = "checkpoint"
        with pytest.raises(AuditError, match="not a regular file") as refused:
            bundle_archive.unpack(_archive([], [info]), tmp_path)
        assert refused.value.where == "bundle/odd"
        assert not (tmp_path / "odd").exists()


def test_an_expansion_past_the_cap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A small upload that decompresses past the cap stops there, refused."""
    monkeypatch.setattr(bundle_archive, "MAX_UNPACKED_BYTES", 64 * 1024)
    archive = _archive([("transfers.jsonl", b"\0" * (1024 * 1024))])
    assert len(archive.getvalue()) < 64 * 1024
    with pytest.raises(AuditError, match="expands past") as refused:
        bundle_archive.unpack(archive, tmp_path)
    assert refused.value.where == "archive"
