#!/usr/bin/env python3
"""Package the Custody filter (dist/custody.wasm) as an OCI image that Istio's
WasmPlugin can pull (`url: oci://...`), without a container engine.

The image follows the "compat" variant of the Wasm image specification
(https://github.com/solo-io/wasm/blob/master/spec/spec-compat.md), the one
Istio's image fetcher (pkg/wasm/imagefetcher.go) tries first:

- exactly one layer, media type application/vnd.oci.image.layer.v1.tar+gzip,
  a tar holding one regular file named plugin.wasm;
- the manifest annotation module.wasm.image/variant=compat;
- a standard image config (application/vnd.oci.image.config.v1+json). Istio
  does not read it; it is a minimal valid OCI config (architecture "wasm",
  os "wasip1": the filter is built for wasm32-wasip1) whose rootfs.diff_ids
  names the uncompressed layer, so registries and tools accept the image.

Written: an OCI image layout directory (oci-layout, index.json,
blobs/sha256/<digest>), the same layout as a tarball (push it with e.g.
`skopeo copy oci-archive:dist/custody-oci.tar:custody:0.1.0 docker://REGISTRY/custody:0.1.0`
or `crane push dist/oci REGISTRY/custody:0.1.0`), and <wasm>.sha256 holding the
hex SHA-256 of the module (Envoy `remote` sources, Istio `file://`/`https://` urls).

Everything is reproducible: fixed tar metadata (mtime 0, uid/gid 0, no user
names), gzip mtime 0 and no file name, JSON with sorted keys. The same wasm
gives the same digests. For an `oci://` url, Istio's `sha256` field is the
*manifest* digest printed by this script.

Usage: python3 packaging/oci_image.py --wasm dist/custody.wasm --out dist/oci --tag custody:0.1.0
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import shutil
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_MAGIC = b"\0asm"
PLUGIN_FILE = "plugin.wasm"


@dataclass(frozen=True)
class Image:
    manifest_digest: str  # "sha256:<hex>"
    wasm_sha256: str  # hex
    layout: Path
    archive: Path
    sha256_file: Path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _descriptor(media_type: str, data: bytes) -> dict:
    return {"mediaType": media_type, "digest": f"sha256:{_sha256(data)}", "size": len(data)}


def _json(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _tar_member(name: str, size: int, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.size = 0 if directory else size
    info.mode = 0o755 if directory else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def layer_tar(wasm: bytes) -> bytes:
    """The uncompressed layer: a tar with the single regular file plugin.wasm."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(_tar_member(PLUGIN_FILE, len(wasm)), io.BytesIO(wasm))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """gzip with a fixed header (mtime 0, no file name): same input, same bytes."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buf.getvalue()


def _prepare_out(out: Path) -> None:
    """Refuse to wipe anything but an (old) OCI layout or an empty directory."""
    if out.exists():
        if not out.is_dir():
            raise SystemExit(f"oci_image: {out} exists and is not a directory")
        if any(out.iterdir()) and not (out / "oci-layout").is_file():
            raise SystemExit(f"oci_image: {out} is not empty and not an OCI layout; refusing to overwrite it")
        shutil.rmtree(out)
    (out / "blobs" / "sha256").mkdir(parents=True)


def _write_archive(layout: Path, archive: Path) -> None:
    """The layout as a tarball (paths relative to the layout root), deterministic."""
    files = sorted(p for p in layout.rglob("*"))
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in files:
            name = path.relative_to(layout).as_posix()
            if path.is_dir():
                tar.addfile(_tar_member(name, 0, directory=True))
            else:
                data = path.read_bytes()
                tar.addfile(_tar_member(name, len(data)), io.BytesIO(data))


def build(wasm_path: Path, out: Path, tag: str, archive: Path | None = None, sha256_file: Path | None = None) -> Image:
    wasm = Path(wasm_path).read_bytes()
    if not wasm.startswith(WASM_MAGIC):
        raise SystemExit(f"oci_image: {wasm_path} is not a WebAssembly module (no \\0asm magic)")
    out = Path(out)
    archive = Path(archive) if archive else out.parent / f"{Path(wasm_path).stem}-oci.tar"
    sha256_file = Path(sha256_file) if sha256_file else Path(f"{wasm_path}.sha256")

    tar = layer_tar(wasm)
    layer = gzip_bytes(tar)
    config = _json(
        {
            "architecture": "wasm",
            "os": "wasip1",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{_sha256(tar)}"]},
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": _descriptor(MEDIA_CONFIG, config),
            "layers": [_descriptor(MEDIA_LAYER, layer)],
            "annotations": {"module.wasm.image/variant": "compat"},
        }
    )
    manifest_desc = _descriptor(MEDIA_MANIFEST, manifest)
    manifest_desc["annotations"] = {"org.opencontainers.image.ref.name": tag}
    index = _json({"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": [manifest_desc]})

    _prepare_out(out)
    for blob in (layer, config, manifest):
        (out / "blobs" / "sha256" / _sha256(blob)).write_bytes(blob)
    (out / "oci-layout").write_bytes(_json({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_bytes(index)
    _write_archive(out, archive)

    wasm_hex = _sha256(wasm)
    sha256_file.parent.mkdir(parents=True, exist_ok=True)
    sha256_file.write_text(wasm_hex + "\n")
    return Image(manifest_desc["digest"], wasm_hex, out, archive, sha256_file)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Package a proxy-wasm module as an Istio-compatible OCI image (compat variant).")
    parser.add_argument("--wasm", type=Path, default=Path("dist/custody.wasm"), help="the module (default: dist/custody.wasm)")
    parser.add_argument("--out", type=Path, default=Path("dist/oci"), help="OCI layout directory to (re)create (default: dist/oci)")
    parser.add_argument("--tag", default="custody:0.1.0", help="reference name in index.json (org.opencontainers.image.ref.name)")
    parser.add_argument("--archive", type=Path, help="tarball of the layout (default: <out>/../<wasm stem>-oci.tar)")
    parser.add_argument("--sha256-file", type=Path, help="where to write the module's hex SHA-256 (default: <wasm>.sha256)")
    args = parser.parse_args(argv)
    image = build(args.wasm, args.out, args.tag, args.archive, args.sha256_file)
    print(f"manifest digest: {image.manifest_digest}")
    print(f"OCI layout:      {image.layout} (ref {args.tag})")
    print(f"OCI archive:     {image.archive}")
    print(f"wasm sha256:     {image.wasm_sha256} -> {image.sha256_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
