"""The OCI image of the filter (packaging/oci_image.py) is checked by parsing
what it wrote, against the OCI image-spec rules and the Wasm image "compat"
variant that Istio's WasmPlugin pulls: one tar+gzip layer holding only
plugin.wasm. The checker below never uses the builder's own return values
beyond where it wrote things."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "packaging"))

import oci_image  # noqa: E402

REAL_WASM = REPO / "dist" / "custody.wasm"
FAKE_WASM = b"\0asm\x01\0\0\0" + b"\0custody-test-module" * 8

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


class LayoutError(Exception):
    pass


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise LayoutError(message)


def _blob(layout: Path, desc: dict) -> bytes:
    """The blob a descriptor points at, after checking digest and size."""
    digest = desc.get("digest", "")
    _require(digest.startswith("sha256:") and len(digest) == 71, f"bad digest {digest!r}")
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    _require(path.is_file(), f"missing blob {digest}")
    data = path.read_bytes()
    _require(hashlib.sha256(data).hexdigest() == digest.removeprefix("sha256:"), f"blob {digest} does not match its digest")
    _require(desc.get("size") == len(data), f"descriptor size {desc.get('size')} != blob size {len(data)} for {digest}")
    return data


def check_layout(layout: Path) -> dict:
    """Validate an OCI image layout holding one compat-variant Wasm image.

    Returns {"ref": ..., "manifest_digest": ..., "wasm": bytes}; raises LayoutError."""
    layout = Path(layout)
    _require(json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}, "bad oci-layout")
    for blob in (layout / "blobs" / "sha256").iterdir():
        _require(blob.is_file(), f"{blob.name}: not a regular file")
        _require(hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, f"blob {blob.name} is corrupted")

    index = json.loads((layout / "index.json").read_text())
    _require(index.get("schemaVersion") == 2, "index.json schemaVersion must be 2")
    _require(index.get("mediaType", "application/vnd.oci.image.index.v1+json") == "application/vnd.oci.image.index.v1+json", "index mediaType")
    _require(len(index.get("manifests", [])) == 1, "index.json must list exactly one manifest")
    mdesc = index["manifests"][0]
    _require(mdesc.get("mediaType") == MANIFEST, f"manifest descriptor mediaType {mdesc.get('mediaType')!r}")
    ref = mdesc.get("annotations", {}).get("org.opencontainers.image.ref.name")
    _require(bool(ref), "no org.opencontainers.image.ref.name")

    manifest = json.loads(_blob(layout, mdesc))
    _require(manifest.get("schemaVersion") == 2, "manifest schemaVersion must be 2")
    _require(manifest.get("mediaType") == MANIFEST, "manifest mediaType")
    _require(manifest.get("annotations", {}).get("module.wasm.image/variant") == "compat", "compat annotation missing")
    _require(manifest["config"].get("mediaType") == CONFIG, "config mediaType")
    config = json.loads(_blob(layout, manifest["config"]))
    _require(bool(config.get("architecture")) and bool(config.get("os")), "config needs architecture and os")

    _require(len(manifest.get("layers", [])) == 1, "compat variant: exactly one layer")
    ldesc = manifest["layers"][0]
    _require(ldesc.get("mediaType") == LAYER, f"layer mediaType {ldesc.get('mediaType')!r}")
    compressed = _blob(layout, ldesc)
    tar_bytes = gzip.decompress(compressed)
    _require(
        config.get("rootfs") == {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]},
        "config rootfs.diff_ids must name the uncompressed layer",
    )
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        members = tar.getmembers()
        _require([m.name for m in members] == ["plugin.wasm"], f"layer must hold only plugin.wasm, has {[m.name for m in members]}")
        _require(members[0].isreg(), "plugin.wasm must be a regular file")
        wasm = tar.extractfile(members[0]).read()
    _require(wasm.startswith(b"\0asm"), "plugin.wasm is not a wasm module")
    return {"ref": ref, "manifest_digest": mdesc["digest"], "wasm": wasm}


@pytest.fixture(scope="module")
def wasm_bytes() -> bytes:
    """The real filter when it has been built, else a stand-in module."""
    return REAL_WASM.read_bytes() if REAL_WASM.is_file() else FAKE_WASM


def _build(tmp: Path, wasm: bytes, tag: str = "custody:0.1.0") -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "custody.wasm").write_bytes(wasm)
    oci_image.build(tmp / "custody.wasm", tmp / "oci", tag)
    return tmp


def test_layout_is_a_valid_compat_wasm_image(tmp_path, wasm_bytes):
    out = _build(tmp_path, wasm_bytes)
    found = check_layout(out / "oci")
    assert found["wasm"] == wasm_bytes
    assert found["ref"] == "custody:0.1.0"
    # Nothing but the three blobs (manifest, config, layer).
    assert len(list((out / "oci" / "blobs" / "sha256").iterdir())) == 3


def test_tarball_holds_the_same_layout(tmp_path, wasm_bytes):
    out = _build(tmp_path / "build", wasm_bytes)
    archive = out / "custody-oci.tar"
    assert archive.is_file()
    unpacked = tmp_path / "unpacked"
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            assert not m.name.startswith(("/", "..")) and ".." not in Path(m.name).parts
            assert m.isreg() or m.isdir()
            assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
        tar.extractall(unpacked, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    original = {p.relative_to(out / "oci"): p.read_bytes() for p in (out / "oci").rglob("*") if p.is_file()}
    extracted = {p.relative_to(unpacked): p.read_bytes() for p in unpacked.rglob("*") if p.is_file()}
    assert extracted == original
    assert check_layout(unpacked)["wasm"] == wasm_bytes


def test_sha256_file_matches_the_module(tmp_path, wasm_bytes):
    out = _build(tmp_path, wasm_bytes)
    assert (out / "custody.wasm.sha256").read_text() == hashlib.sha256(wasm_bytes).hexdigest() + "\n"


def test_builds_are_reproducible(tmp_path, wasm_bytes):
    a = check_layout(_build(tmp_path / "a", wasm_bytes) / "oci")
    b = check_layout(_build(tmp_path / "b", wasm_bytes) / "oci")
    assert a["manifest_digest"] == b["manifest_digest"]
    assert (tmp_path / "a" / "custody-oci.tar").read_bytes() == (tmp_path / "b" / "custody-oci.tar").read_bytes()
    # A different module gives a different image.
    c = check_layout(_build(tmp_path / "c", FAKE_WASM + b"\0") / "oci")
    assert c["manifest_digest"] != a["manifest_digest"]


def test_rebuilding_into_the_same_directory_leaves_no_stale_blobs(tmp_path, wasm_bytes):
    _build(tmp_path, FAKE_WASM)
    _build(tmp_path, wasm_bytes)
    assert check_layout(tmp_path / "oci")["wasm"] == wasm_bytes
    assert len(list((tmp_path / "oci" / "blobs" / "sha256").iterdir())) == 3


def test_cli_prints_the_manifest_digest(tmp_path, wasm_bytes, capsys):
    (tmp_path / "custody.wasm").write_bytes(wasm_bytes)
    assert oci_image.main(["--wasm", str(tmp_path / "custody.wasm"), "--out", str(tmp_path / "oci"), "--tag", "custody:9.9.9"]) == 0
    printed = capsys.readouterr().out
    found = check_layout(tmp_path / "oci")
    assert f"manifest digest: {found['manifest_digest']}" in printed
    assert found["ref"] == "custody:9.9.9"


def test_not_a_wasm_module_is_refused(tmp_path):
    (tmp_path / "custody.wasm").write_bytes(b"MZ not wasm")
    with pytest.raises(SystemExit):
        oci_image.build(tmp_path / "custody.wasm", tmp_path / "oci", "custody:0.1.0")


def test_will_not_wipe_a_directory_that_is_not_a_layout(tmp_path):
    (tmp_path / "custody.wasm").write_bytes(FAKE_WASM)
    (tmp_path / "oci").mkdir()
    (tmp_path / "oci" / "precious.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        oci_image.build(tmp_path / "custody.wasm", tmp_path / "oci", "custody:0.1.0")
    assert (tmp_path / "oci" / "precious.txt").read_text() == "keep me"


# --- The checker itself must catch broken layouts. ---


def _manifest(layout: Path) -> tuple[Path, dict]:
    digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"].removeprefix("sha256:")
    path = layout / "blobs" / "sha256" / digest
    return path, json.loads(path.read_bytes())


def _layer_path(layout: Path) -> Path:
    return layout / "blobs" / "sha256" / _manifest(layout)[1]["layers"][0]["digest"].removeprefix("sha256:")


def _rewrite_manifest(layout: Path, manifest: dict) -> None:
    """Store an edited manifest consistently (new digest, index updated), so
    only the edit itself can make the check fail."""
    old, _ = _manifest(layout)
    data = json.dumps(manifest).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    old.unlink()
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0].update(digest=f"sha256:{digest}", size=len(data))
    (layout / "index.json").write_text(json.dumps(index))


def _store(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _replace_layer(layout: Path, tar_bytes: bytes) -> None:
    """A new layer, stored consistently (blob, config diff_ids, manifest)."""
    _, manifest = _manifest(layout)
    blobs = layout / "blobs" / "sha256"
    config = json.loads((blobs / manifest["config"]["digest"].removeprefix("sha256:")).read_bytes())
    (blobs / manifest["config"]["digest"].removeprefix("sha256:")).unlink()
    _layer_path(layout).unlink()
    config["rootfs"]["diff_ids"] = ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]
    manifest["config"].update(_store(layout, json.dumps(config).encode()))
    manifest["layers"][0].update(_store(layout, gzip.compress(tar_bytes, mtime=0)))
    _rewrite_manifest(layout, manifest)


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _corrupt_blob(layout: Path) -> None:
    path = _layer_path(layout)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _wrong_size(layout: Path) -> None:
    _, manifest = _manifest(layout)
    manifest["layers"][0]["size"] += 1
    _rewrite_manifest(layout, manifest)


def _wrong_layer_media_type(layout: Path) -> None:
    _, manifest = _manifest(layout)
    manifest["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
    _rewrite_manifest(layout, manifest)


def _no_compat_annotation(layout: Path) -> None:
    _, manifest = _manifest(layout)
    del manifest["annotations"]
    _rewrite_manifest(layout, manifest)


def _index_points_nowhere(layout: Path) -> None:
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["digest"] = "sha256:" + "0" * 64
    (layout / "index.json").write_text(json.dumps(index))


def _extra_file_in_layer(layout: Path) -> None:
    _replace_layer(layout, _tar({"plugin.wasm": FAKE_WASM, "extra.txt": b"x"}))


def _misnamed_wasm(layout: Path) -> None:
    _replace_layer(layout, _tar({"filter.wasm": FAKE_WASM}))


def _bad_layout_version(layout: Path) -> None:
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}')


def _tampered_wasm_same_layer(layout: Path) -> None:
    _replace_layer(layout, _tar({"plugin.wasm": b"\x7fELF not wasm"}))


@pytest.mark.parametrize(
    "breakage, message",
    [
        pytest.param(_corrupt_blob, "is corrupted", id="corrupt_blob"),
        pytest.param(_wrong_size, "descriptor size", id="wrong_size"),
        pytest.param(_wrong_layer_media_type, "layer mediaType", id="wrong_layer_media_type"),
        pytest.param(_no_compat_annotation, "compat annotation", id="no_compat_annotation"),
        pytest.param(_index_points_nowhere, "missing blob", id="index_points_nowhere"),
        pytest.param(_extra_file_in_layer, "only plugin.wasm", id="extra_file_in_layer"),
        pytest.param(_misnamed_wasm, "only plugin.wasm", id="misnamed_wasm"),
        pytest.param(_tampered_wasm_same_layer, "not a wasm module", id="not_wasm"),
        pytest.param(_bad_layout_version, "oci-layout", id="bad_layout_version"),
    ],
)
def test_check_layout_detects_a_broken_layout(tmp_path, breakage, message):
    layout = _build(tmp_path, FAKE_WASM) / "oci"
    check_layout(layout)  # intact first
    breakage(layout)
    with pytest.raises(LayoutError, match=message):
        check_layout(layout)
