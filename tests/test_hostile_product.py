"""Hostile products: symlinks out of a ``.SEN3`` folder, zip bombs, lying or unreadable zip entries,
hostile manifests, a write failure while registering.

Every bad product here is real: a simulated product (``cloudgan_core.simulate``) copied and then
broken on disk, zips written with :mod:`zipfile` whose headers are then edited byte by byte where
zipfile cannot write the case itself (the encryption flag, deflate64, a 2 GiB member that
compresses to 2 MB). Memory is measured in a child process from ``/proc/self/status`` (VmHWM, the
peak resident set, reset before each case through ``/proc/self/clear_refs``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

from cloudgan_core.errors import ProductError
from cloudgan_core.slstr.flags import scene_masks
from cloudgan_core.slstr.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, parse_manifest
from cloudgan_core.slstr.product import MAX_ZIP_MEMBERS, open_product, product_id
from cloudgan_core.stages import products
from tests.paths import REPO

MiB = 1024 * 1024
#: Uncompressed size of the zip bomb's member: 2 GiB of zeros (about 2 MB deflated).
BOMB_BYTES = 2048 * MiB
#: Size of the big corrupt member whose size matches the manifest but whose MD5 does not.
CORRUPT_BYTES = 256 * MiB
#: Most a hostile product may add to the peak resident set of the process reading it.
RSS_GROWTH_LIMIT = 200 * MiB


# -- building hostile zips -------------------------------------------------------------------------

def _crc32_of_zeros(size: int) -> int:
    """``zlib.crc32(bytes(size))`` without making the bytes.

    CRC-32 over a zero byte is an affine map of the running CRC (32 x 32 bits over GF(2) plus a
    constant); the map for ``size`` zeros is the one-byte map composed ``size`` times, built by
    square-and-multiply in a few milliseconds even for 2 GiB.
    """
    def apply(m: tuple[int, list[int]], crc: int) -> int:
        const, columns = m
        for bit in range(32):
            if crc >> bit & 1:
                const ^= columns[bit]
        return const

    def compose(outer: tuple[int, list[int]], inner: tuple[int, list[int]]) -> tuple[int, list[int]]:
        return apply(outer, inner[0]), [apply(outer, col) ^ outer[0] for col in inner[1]]

    one = zlib.crc32(b"\0")
    step = (one, [zlib.crc32(b"\0", 1 << bit) ^ one for bit in range(32)])
    result = (0, [1 << bit for bit in range(32)])
    while size:
        if size & 1:
            result = compose(step, result)
        step = compose(step, step)
        size >>= 1
    return result[0]


def _deflated_zeros(size: int) -> tuple[bytes, int, int]:
    """``(raw deflate stream, CRC-32, size)`` of ``size`` zero bytes (a whole number of MiB).

    After a full flush deflate starts afresh, so every MiB of zeros compresses to the same bytes:
    the stream is one compressed MiB repeated, made in milliseconds (zipfile needs ~5 s for 2 GiB).
    """
    assert size % MiB == 0
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(bytes(MiB)) + comp.flush(zlib.Z_FULL_FLUSH)
    assert comp.compress(bytes(MiB)) + comp.flush(zlib.Z_FULL_FLUSH) == block
    return block * (size // MiB) + comp.flush(), _crc32_of_zeros(size), size


#: Header fields as (offset, struct format) in a local file header and in a central-directory entry.
_LOCAL = {"flag_bits": (6, "<H"), "compress_type": (8, "<H"), "crc": (14, "<I"), "file_size": (22, "<I")}
_CENTRAL = {"flag_bits": (8, "<H"), "compress_type": (10, "<H"), "crc": (16, "<I"), "file_size": (24, "<I"),
            "external_attr": (38, "<I")}


def _patch_member(zpath: Path, member: str, **fields: int) -> None:
    """Rewrite header ``fields`` (flag_bits, compress_type, crc, file_size; external_attr, which only
    the central directory has) of ``member`` in its local header and its central-directory entry, as
    a hand-made or hostile zip would have them."""
    with zipfile.ZipFile(zpath) as zf:
        local = zf.getinfo(member).header_offset
    data = bytearray(zpath.read_bytes())
    name = member.encode()
    assert data[local:local + 4] == b"PK\x03\x04" and data[local + 30:local + 30 + len(name)] == name
    central = data.find(b"PK\x01\x02")
    while (data[central + 46:central + 46 + len(name)] != name
           or struct.unpack_from("<H", data, central + 28)[0] != len(name)):
        central = data.find(b"PK\x01\x02", central + 4)
        assert central > 0, f"{member} has no central-directory entry"
    for field, value in fields.items():
        if field in _LOCAL:
            struct.pack_into(_LOCAL[field][1], data, local + _LOCAL[field][0], value)
        struct.pack_into(_CENTRAL[field][1], data, central + _CENTRAL[field][0], value)
    zpath.write_bytes(bytes(data))


def _zip_product(folder: Path, target: Path, deflated: dict[str, tuple[bytes, int, int]] | None = None,
                 extra: dict[str, bytes] | None = None, methods: dict[str, int] | None = None) -> Path:
    """Zip ``folder`` as ``<name>.SEN3/<file>`` (stored, or the zipfile method given in ``methods``).
    A file named in ``deflated`` is replaced by the given raw deflate stream, its headers then saying
    deflate and the given CRC-32 and size; ``extra`` adds entries under the given names."""
    deflated, methods = deflated or {}, methods or {}
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted(folder.iterdir()):
            zf.writestr(f"{folder.name}/{f.name}", deflated[f.name][0] if f.name in deflated else f.read_bytes(),
                        compress_type=methods.get(f.name, zipfile.ZIP_STORED))
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    for fname, (_, crc, size) in deflated.items():
        _patch_member(target, f"{folder.name}/{fname}", compress_type=zipfile.ZIP_DEFLATED, crc=crc, file_size=size)
    return target


def _edit_manifest(folder: Path, old: str, new: str, count: int = 1) -> None:
    path = folder / MANIFEST_NAME
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= count, old
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def _manifest_size(folder: Path, fname: str) -> int:
    text = (folder / MANIFEST_NAME).read_text(encoding="utf-8")
    return int(re.search(rf'size="(\d+)">\s*<fileLocation locatorType="URL" href="\./{re.escape(fname)}"', text)[1])


def _set_manifest_size(folder: Path, fname: str, size: int) -> None:
    _edit_manifest(folder, f'size="{_manifest_size(folder, fname)}">\n               <fileLocation locatorType="URL" '
                           f'href="./{fname}"',
                   f'size="{size}">\n               <fileLocation locatorType="URL" href="./{fname}"')


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _written(root: Path) -> list[str]:
    """Every file under ``root`` and every temporary (a dot entry), relative; empty folders are not outputs."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir() or p.name.startswith("."))


# -- measuring memory in a child process ----------------------------------------------------------

_MEASURE = r"""
import json, resource, sys, time
from pathlib import Path
from cloudgan_core.slstr.product import open_product
from cloudgan_core.stages import products

def status():
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {k: int(fields[k].split()[0]) * 1024 for k in ("VmHWM", "VmRSS", "VmSize")}

def run(action, path, store):
    if action == "register":
        products.register(Path(store), Path(path))
        return
    with open_product(path) as product:
        if action == "verify":
            product.verify(["flags_an.nc"])
        elif action == "read_bytes":
            product.read_bytes("flags_an.nc")
        elif action == "open_dataset":
            product.open_dataset("flags_an.nc").close()

# Safety net for a regression: the address space may grow by 1.5 GiB at most, so code that reads a
# bomb whole fails with MemoryError here instead of taking the shared machine's memory.
limit = status()["VmSize"] + 1536 * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
results = []
for action, path, store in json.loads(sys.argv[1]):
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset VmHWM to the current resident set
    start = status()["VmRSS"]
    t0 = time.perf_counter()
    try:
        run(action, path, store)
        error = None
    except BaseException as exc:
        error = [type(exc).__name__, str(exc)[:400]]
    seconds = time.perf_counter() - t0
    results.append({"action": action, "path": path, "error": error, "seconds": round(seconds, 3),
                    "rss_start_mib": round(start / 2**20, 1),
                    "peak_growth_mib": round((status()["VmHWM"] - start) / 2**20, 1)})
print(json.dumps(results))
"""


def _measure(cases: list[tuple[str, Path, Path]]) -> list[dict]:
    """Run each ``(action, product, store)`` in one child process; per case its error, seconds and
    the growth of the peak resident set over the resident set at its start (MiB)."""
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux /proc/self/clear_refs to measure the peak resident set per case")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _MEASURE, json.dumps([[a, str(p), str(s)] for a, p, s in cases])],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    for r in results:
        print(f"{r['action']:>12} {Path(r['path']).name}: {r['seconds']:.3f} s, peak RSS +{r['peak_growth_mib']} MiB "
              f"(from {r['rss_start_mib']} MiB): {r['error']}")
    return results


# -- 1. symlinks in a .SEN3 folder -----------------------------------------------------------------

@pytest.mark.parametrize("where", ["outside", "inside"])
def test_symlinked_member_is_refused(copy_product, tmp_path: Path, where: str) -> None:
    folder = copy_product()
    member = folder / "flags_an.nc"
    if where == "outside":  # a byte-identical file outside the product: the MD5 matches, only the link is wrong
        target = tmp_path / "outside" / "flags_an.nc"
        target.parent.mkdir()
        target.write_bytes(member.read_bytes())
    else:
        target = folder / "flags_copy.nc"
        target.write_bytes(member.read_bytes())
    member.unlink()
    member.symlink_to(target)
    store = products.folder(tmp_path / "store", product_id(folder.name))
    with pytest.raises(ProductError) as err:
        products.register(tmp_path / "store", folder)
    msg = str(err.value)
    assert str(member) in msg and "symbolic link" in msg
    assert not store.exists() and _leftovers(store.parent) == []
    with open_product(folder) as product:
        with pytest.raises(ProductError, match=r"flags_an\.nc: .*symbolic link"):
            product.verify(["flags_an.nc"])
        with pytest.raises(ProductError, match=r"flags_an\.nc: .*symbolic link"):
            scene_masks(product)  # open_dataset refuses it too


def test_symlinked_manifest_is_refused(copy_product, tmp_path: Path) -> None:
    folder = copy_product()
    outside = tmp_path / "elsewhere.xml"
    outside.write_bytes((folder / MANIFEST_NAME).read_bytes())
    (folder / MANIFEST_NAME).unlink()
    (folder / MANIFEST_NAME).symlink_to(outside)
    with pytest.raises(ProductError) as err:
        open_product(folder)
    assert str(folder / MANIFEST_NAME) in str(err.value) and "symbolic link" in str(err.value)


# -- 2. bounded reads: zip bombs, lying headers, big corrupt members, caps -------------------------

@pytest.fixture(scope="module")
def bomb_zips(sim_product: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``bomb``: flags_an.nc is 2 GiB of zeros (2 MB deflated) while the manifest says 45 kB.
    ``lying``: the same stream, but the zip headers claim the manifest's size (and the CRC of that
    many zeros). ``corrupt``: flags_an.nc is 256 MiB of zeros, the manifest's size says so too, but
    its MD5 is still the real file's."""
    out = tmp_path_factory.mktemp("bombs")
    bomb = _deflated_zeros(BOMB_BYTES)
    small = _manifest_size(sim_product, "flags_an.nc")
    zips = {"bomb": _zip_product(sim_product, out / "bomb.zip", {"flags_an.nc": bomb}),
            "lying": _zip_product(sim_product, out / "lying.zip",
                                  {"flags_an.nc": (bomb[0], _crc32_of_zeros(small), small)})}
    corrupt = out / "corrupt" / sim_product.name
    shutil.copytree(sim_product, corrupt)
    _set_manifest_size(corrupt, "flags_an.nc", CORRUPT_BYTES)
    zips["corrupt"] = _zip_product(corrupt, out / "corrupt.zip", {"flags_an.nc": _deflated_zeros(CORRUPT_BYTES)})
    assert zips["bomb"].stat().st_size < 5 * MiB
    with zipfile.ZipFile(zips["bomb"]) as zf:
        assert zf.getinfo(f"{sim_product.name}/flags_an.nc").file_size == BOMB_BYTES
    return zips


@pytest.mark.slow
def test_zip_bomb_fails_fast_in_bounded_memory(bomb_zips: dict[str, Path], sim_product: Path, tmp_path: Path) -> None:
    bomb = bomb_zips["bomb"]
    small = _manifest_size(sim_product, "flags_an.nc")
    results = _measure([(action, bomb, tmp_path / f"store-{action}")
                        for action in ("register", "open_dataset", "read_bytes", "verify")])
    for r in results:
        assert r["error"] and r["error"][0] == "ProductError", r
        msg = r["error"][1]
        assert f"{bomb}!" in msg and "flags_an.nc" in msg and str(BOMB_BYTES) in msg and str(small) in msg, msg
        assert r["seconds"] < 1.0, r
        assert r["peak_growth_mib"] * MiB < RSS_GROWTH_LIMIT, r
    assert _written(tmp_path) == []


@pytest.mark.slow
def test_lying_and_corrupt_members_fail_on_md5_in_bounded_memory(bomb_zips: dict[str, Path], tmp_path: Path) -> None:
    cases = [("register", bomb_zips["lying"], tmp_path / "s1"), ("register", bomb_zips["corrupt"], tmp_path / "s2"),
             ("verify", bomb_zips["corrupt"], tmp_path / "s3")]
    for r in _measure(cases):
        assert r["error"] and r["error"][0] == "ProductError", r
        assert "flags_an.nc: MD5 mismatch" in r["error"][1], r
        assert r["peak_growth_mib"] * MiB < RSS_GROWTH_LIMIT, r
    assert _written(tmp_path) == []


def test_member_size_differs_from_manifest(copy_product, tmp_path: Path) -> None:
    folder = copy_product()
    size = (folder / "geometry_tn.nc").stat().st_size
    with open(folder / "geometry_tn.nc", "ab") as fh:
        fh.write(b"\0" * 10)
    with pytest.raises(ProductError, match=rf"geometry_tn\.nc: size mismatch: the manifest says {size} bytes, "
                                           rf"the file has {size + 10}"):
        products.register(tmp_path / "store", folder)
    target = _zip_product(folder, tmp_path / "p.zip")
    with open_product(target) as product:
        with pytest.raises(ProductError, match=r"p\.zip!.*geometry_tn\.nc: size mismatch"):
            product.open_dataset("geometry_tn.nc")  # the size check guards the in-memory read


@pytest.mark.parametrize("change", ["grows", "shrinks"])
def test_file_changing_while_read(copy_product, change: str) -> None:
    """The size is checked before reading and counted while reading: a file that grows past it
    (or ends before it) during the read is refused, not read on."""
    folder = copy_product()
    path = folder / "flags_an.nc"
    size = path.stat().st_size
    with open_product(folder) as product:
        chunks = product.iter_chunks("flags_an.nc", chunk_bytes=4096)
        assert len(next(chunks)) == 4096
        if change == "grows":
            with open(path, "ab") as fh:
                fh.write(b"\0" * 100)
            problem = rf"yields more than the {size} bytes it declares"
        else:
            os.truncate(path, size - 100)
            problem = rf"ends after {size - 100} of its {size} bytes \(truncated\)"
        with pytest.raises(ProductError, match=rf"^{re.escape(str(path))}: {problem}"):
            list(chunks)


def test_manifest_too_large(copy_product, tmp_path: Path) -> None:
    with pytest.raises(ProductError, match=r"m\.xml: manifest is 16777217 bytes; more than the limit of 16777216"):
        parse_manifest(b" " * (MAX_MANIFEST_BYTES + 1), "m.xml")
    folder = copy_product()
    # a valid manifest padded with a 17 MiB comment: well-formed XML, just too big
    _edit_manifest(folder, "<metadataSection>", "<metadataSection><!--" + "x" * (17 * MiB) + "-->")
    with pytest.raises(ProductError, match=r"xfdumanifest\.xml: manifest is \d+ bytes; more than the limit"):
        open_product(folder)
    # the manifest member of a zip is a bomb itself
    target = _zip_product(folder, tmp_path / "p.zip", {MANIFEST_NAME: _deflated_zeros(BOMB_BYTES)})
    with pytest.raises(ProductError, match=rf"p\.zip!{folder.name}/xfdumanifest\.xml: manifest is {BOMB_BYTES} bytes"):
        open_product(target)


def test_too_many_zip_entries(sim_product: Path, tmp_path: Path) -> None:
    pad = {f"{sim_product.name}/pad/{i}": b"" for i in range(MAX_ZIP_MEMBERS)}
    target = _zip_product(sim_product, tmp_path / "many.zip", extra=pad)
    entries = MAX_ZIP_MEMBERS + len(list(sim_product.iterdir()))
    with pytest.raises(ProductError, match=rf"many\.zip: zip holds {entries} entries; more than the "
                                           rf"limit of {MAX_ZIP_MEMBERS}"):
        open_product(target)


def test_huge_zip_directory(sim_product: Path, tmp_path: Path) -> None:
    pad = {f"{sim_product.name}/{i:03d}{'x' * 60_000}": b"" for i in range(100)}  # 6 MB of names
    target = _zip_product(sim_product, tmp_path / "names.zip", extra=pad)
    with pytest.raises(ProductError, match=r"names\.zip: the zip's central directory is \d+ bytes; more than the "
                                           r"limit"):
        open_product(target)


# -- 3. clear errors for unreadable zip entries and bad manifests ---------------------------------

@pytest.mark.parametrize("member", ["flags_an.nc", MANIFEST_NAME])
@pytest.mark.parametrize(("fields", "problem"), [
    ({"flag_bits": 0x1}, "is encrypted"),
    ({"compress_type": 9}, r"compression method 9 \(deflate64\)"),
    ({"external_attr": 0o120777 << 16}, "is a symbolic link in the zip"),
    ("bzip2", r"compression method 12 \(bzip2\)"),  # a real bzip2 entry: Python reads it without an output bound
])
def test_unreadable_zip_member(sim_product: Path, tmp_path: Path, member: str, fields: dict | str, problem: str) -> None:
    if fields == "bzip2":
        target = _zip_product(sim_product, tmp_path / "p.zip", methods={member: zipfile.ZIP_BZIP2})
    else:
        target = _zip_product(sim_product, tmp_path / "p.zip")
        _patch_member(target, f"{sim_product.name}/{member}", **fields)
    where = re.escape(f"{target}!{sim_product.name}/{member}")
    with pytest.raises(ProductError, match=rf"^{where}: .*{problem}"):
        products.register(tmp_path / "store", target)
    if member != MANIFEST_NAME:
        with open_product(target) as product, pytest.raises(ProductError, match=rf"^{where}: .*{problem}"):
            product.open_dataset(member)
        with open_product(target) as product, pytest.raises(ProductError, match=rf"^{where}: .*{problem}"):
            with product.open_netcdf(member):
                pass
    assert _written(tmp_path) == ["p.zip"]


def _sim_manifest(sim_product: Path) -> str:
    return (sim_product / MANIFEST_NAME).read_text(encoding="utf-8")


@pytest.mark.parametrize("size", ["12x", "-5", "1e3", "", "0x10", "9" * 40])
def test_manifest_size_not_a_number(sim_product: Path, size: str) -> None:
    text = _sim_manifest(sim_product).replace(f'size="{_manifest_size(sim_product, "flags_an.nc")}"', f'size="{size}"')
    with pytest.raises(ProductError, match=r"^m\.xml: manifest gives 'flags_an\.nc' the size .*; expected a whole "
                                           r"number of bytes"):
        parse_manifest(text.encode(), "m.xml")


@pytest.mark.parametrize("value", ["lots", "nan", "inf", "150", "-1", ""])
def test_manifest_percentage_not_a_number(sim_product: Path, value: str) -> None:
    text = re.sub(r'cloudyPixels percentage="[^"]*"', f'cloudyPixels percentage="{value}"', _sim_manifest(sim_product))
    with pytest.raises(ProductError, match=r"^m\.xml: cloudyPixels percentage .* is not a number from 0 to 100"):
        parse_manifest(text.encode(), "m.xml")


@pytest.mark.parametrize(("pattern", "replacement", "problem"), [
    (r"<gml:posList>[^<]*", "<gml:posList>10 20 north 30 10 20", "footprint posList is not a list of numbers"),
    (r"<gml:posList>[^<]*", "<gml:posList>" + "1.5 " * 20_000, "holds more than 65536 characters"),
    (r'(href="\./flags_an\.nc"/>\s*<checksum checksumName="MD5">)[^<]*', r"\g<1>not-an-md5",
     "manifest gives 'flags_an.nc' the MD5 'not-an-md5'; expected 32 hexadecimal digits"),
])
def test_manifest_bad_fields(sim_product: Path, pattern: str, replacement: str, problem: str) -> None:
    text, n = re.subn(pattern, replacement, _sim_manifest(sim_product), count=1)
    assert n == 1
    with pytest.raises(ProductError, match=rf"^m\.xml: .*{re.escape(problem)}"):
        parse_manifest(text.encode(), "m.xml")


@pytest.mark.parametrize("data", [b"", b"\x00\xffgarbage\x89PNG", b"<xfdu><unclosed>", b"<a>&undefined;</a>",
                                  "<a>caf\u00e9</a>".encode("latin-1")])
def test_manifest_not_xml(data: bytes) -> None:
    with pytest.raises(ProductError, match=r"^m\.xml: manifest is not valid XML"):
        parse_manifest(data, "m.xml")


_LAUGHS = ('<!DOCTYPE lolz [<!ENTITY lol "lol">'
           + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10))
           + "]>")


@pytest.mark.parametrize("doctype", [
    _LAUGHS,  # billion laughs: 10^9 "lol"
    '<!DOCTYPE x [<!ENTITY big "' + "A" * 10_000 + '">]>',  # quadratic blow-up: &big; used many times
    '<!DOCTYPE x [<!ENTITY ext SYSTEM "file:///etc/hostname">]>',  # external entity
    '<!DOCTYPE x SYSTEM "http://127.0.0.1:9/x.dtd">',
])
def test_manifest_doctype_refused(sim_product: Path, doctype: str) -> None:
    text = _sim_manifest(sim_product)
    ref = "&lol9;" if "lol9" in doctype else "&big;" * 700 if "big" in doctype else "&ext;" if "ext" in doctype else ""
    text = text.replace("?>\n", "?>\n" + doctype + "\n", 1)
    text = text.replace("<sentinel3:timeliness>NT", f"<sentinel3:timeliness>NT{ref}")
    with pytest.raises(ProductError, match=r"^m\.xml: manifest has a DOCTYPE declaration; refusing it"):
        parse_manifest(text.encode(), "m.xml")


def test_manifest_product_name_is_validated(copy_product, tmp_path: Path) -> None:
    folder = copy_product()
    _edit_manifest(folder, f"<sentinel3:productName>{folder.name}<", "<sentinel3:productName>../../escaped<")
    with pytest.raises(ProductError, match=r"xfdumanifest\.xml: .*'\.\./\.\./escaped\.SEN3'.* is not an SL_1_RBT "
                                           r"product name"):
        products.register(tmp_path / "area" / "store", folder)
    assert not list(tmp_path.rglob("escaped*"))


# -- stored products ------------------------------------------------------------------------------

def test_stored_product_is_checked(sim_product: Path, tmp_path: Path) -> None:
    key = product_id(sim_product.name)
    store = products.folder(tmp_path, key)
    good = products.register(tmp_path, sim_product).path
    assert products.read(tmp_path, key) == good
    (store / "x.SEN3").mkdir()  # a second product beside it: which one would the stages read?
    with pytest.raises(ProductError, match=rf"^{re.escape(str(store))}: holds 2 products"):
        products.read(tmp_path, key)
    (store / "x.SEN3").rmdir()
    moved = tmp_path / "elsewhere" / good.name
    moved.parent.mkdir()
    good.rename(moved)
    good.symlink_to(moved)  # the store's product is a link to a folder elsewhere
    with pytest.raises(ProductError, match=rf"^{re.escape(str(good))}: .*symbolic link"):
        products.read(tmp_path, key)
    good.unlink()
    (store / "bad.SEN3").mkdir()
    with pytest.raises(ProductError, match=r"'bad\.SEN3'.* is not an SL_1_RBT product name"):
        products.read(tmp_path, key)


# -- 4. a write failure while registering ---------------------------------------------------------

_WRITE_LIMITED = r"""
import errno, json, resource, signal, sys
from pathlib import Path
from cloudgan_core.stages import products

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    products.register(Path(sys.argv[2]), Path(sys.argv[1]))
    print(json.dumps(None))
except Exception as exc:
    chain, e = [], exc
    while e is not None:
        chain.append([type(e).__name__, getattr(e, "errno", None), str(e)[:300]])
        e = e.__cause__ or e.__context__
    print(json.dumps(chain))
"""


@pytest.mark.slow
def test_write_failure_while_registering_is_not_swallowed(sim_zip: Path, tmp_path: Path) -> None:
    """Writing the copy fails for real (the kernel refuses to grow a file past RLIMIT_FSIZE, as it
    would on a full disk): the OSError reaches the caller (or a CloudGANError made from it by
    ``atomic``), never a "cannot read the product" message, and no half-written store remains."""
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", _WRITE_LIMITED, str(sim_zip), str(store)], capture_output=True,
                         text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    chain = json.loads(out.stdout.strip().splitlines()[-1])
    assert chain, "the write limit did not stop the copy"
    assert any(code == errno.EFBIG for _, code, _ in chain), chain  # from the write
    assert not any("cannot read" in text for _, _, text in chain), chain
    assert _written(store) == []
