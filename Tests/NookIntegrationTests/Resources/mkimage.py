#!/usr/bin/env python3
"""Builds small container images for nook's tests, without the internet.

usage: mkimage.py SPEC.json OUT

SPEC is a JSON object:
  format       "oci" (an image layout directory, the default), "oci-archive"
               (that layout as a tar) or "docker" (a `docker save` tar)
  compression  "gzip" (the default for OCI), "zstd" or "none" (docker's)
  name         a reference ("localhost/x:1"): ref.name annotation / RepoTags
  refname      the raw ref.name annotation instead (a bare tag, say)
  architecture "amd64" by default; os is "linux"
  config       the config's "config" object (Cmd, Env, User, ...)
  layers       a list of layers, each a list of entries or {"tar": PATH}
  tamper       breaks the image after building it (for digest tests):
               "layer-byte"   one byte of the first layer blob changed
               "layer-size"   the manifest gives the first layer a wrong size
               "diffid"       the config gives the first layer a wrong diffID
               "manifest"     index.json points at a digest the manifest lacks
               "config-byte"  one byte of the config changed

An entry: {"name": "a/b", "type": "file" (default) | "dir" | "symlink" |
"hardlink" | "fifo" | "char" | "block", "data": "text", "hex": "e9" (bytes,
for content that is not UTF-8), "zeros": N (N zero
bytes, streamed), "size": N (the size the header claims, default the
data's), "target": "...", "mode": 0o644 as a number, "uid": 0, "gid": 0,
"major"/"minor", "xattrs": {"user.a": "value"} (PAX SCHILY.xattr), "pax":
{...} (raw PAX records)}.
"""
import gzip, hashlib, io, json, os, shutil, subprocess, sys, tarfile


class Zeros(io.RawIOBase):
    """n zero bytes, produced as read."""

    def __init__(self, n):
        self.left = n

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


class Lying(io.RawIOBase):
    """Fewer bytes than the header claims: the real data, then EOF."""

    def __init__(self, data):
        self.data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, b):
        return self.data.readinto(b)


def layer_tar(entries, path):
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
             "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE, "char": tarfile.CHRTYPE,
             "block": tarfile.BLKTYPE}
    with open(path, "wb") as out:
        tar = tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT)
        for e in entries:
            kind = e.get("type", "file")
            info = tarfile.TarInfo(e["name"])
            info.type = types[kind]
            info.mode = e.get("mode", 0o755 if kind == "dir" else 0o644)
            info.uid = e.get("uid", 0)
            info.gid = e.get("gid", 0)
            info.uname = info.gname = ""
            info.mtime = e.get("mtime", 1700000000)
            info.linkname = e.get("target", "")
            info.devmajor = e.get("major", 0)
            info.devminor = e.get("minor", 0)
            pax = dict(e.get("pax", {}))
            for k, v in e.get("xattrs", {}).items():
                pax["SCHILY.xattr." + k] = v
            info.pax_headers = pax
            data = None
            if kind == "file":
                if "zeros" in e:
                    info.size = e["zeros"]
                    data = io.BufferedReader(Zeros(e["zeros"]), 1 << 20)
                else:
                    raw = bytes.fromhex(e["hex"]) if "hex" in e else e.get("data", "").encode()
                    info.size = len(raw)
                    data = io.BytesIO(raw)
                    if "size" in e:
                        info.size = e["size"]
                        data = Lying(raw)
            try:
                tar.addfile(info, data)
            except OSError:
                # The data ran out before the size the header claims: leave
                # the archive truncated there, as a lying header would.
                break
        else:
            tar.close()
            return
        tar.fileobj.flush()


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def compress(path, how):
    if how == "none":
        return path
    if how == "gzip":
        with open(path, "rb") as src, gzip.open(path + ".gz", "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return path + ".gz"
    if how == "zstd":
        subprocess.run(["zstd", "-q", "-f", "-o", path + ".zst", path], check=True)
        return path + ".zst"
    raise SystemExit(f"unknown compression {how}")


def build(spec, out):
    work = out + ".work"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    fmt = spec.get("format", "oci")
    how = spec.get("compression", "none" if fmt == "docker" else "gzip")
    tamper = spec.get("tamper")
    layers = []  # (blob path, diffID, compressed digest, size, media type)
    for i, layer in enumerate(spec["layers"]):
        tar = os.path.join(work, f"layer{i}.tar")
        if isinstance(layer, dict):
            shutil.copy(layer["tar"], tar)
        else:
            layer_tar(layer, tar)
        diff_id = sha(tar)
        blob = compress(tar, how)
        media = "application/vnd.oci.image.layer.v1.tar" + {"gzip": "+gzip", "zstd": "+zstd", "none": ""}[how]
        layers.append((blob, diff_id, sha(blob), os.path.getsize(blob), media))

    diff_ids = ["sha256:" + l[1] for l in layers]
    if tamper == "diffid":
        diff_ids[0] = "sha256:" + "0" * 64
    config = {"architecture": spec.get("architecture", "amd64"), "os": "linux",
              "config": spec.get("config", {}), "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "history": [{"created_by": "mkimage.py"} for _ in layers]}
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = hashlib.sha256(config_bytes).hexdigest()

    if os.path.exists(out):
        if os.path.isdir(out):
            shutil.rmtree(out)
        else:
            os.unlink(out)
    if fmt == "docker":
        d = os.path.join(work, "docker")
        os.makedirs(d)
        with open(os.path.join(d, config_digest + ".json"), "wb") as f:
            f.write(config_bytes)
        paths = []
        for i, (blob, diff_id, _, _, _) in enumerate(layers):
            os.makedirs(os.path.join(d, f"l{i}"))
            shutil.copy(blob, os.path.join(d, f"l{i}", "layer.tar"))
            paths.append(f"l{i}/layer.tar")
        if tamper == "layer-byte":
            flip(os.path.join(d, paths[0]))
        if tamper == "config-byte":
            flip(os.path.join(d, config_digest + ".json"), at=5)
        manifest = [{"Config": config_digest + ".json", "RepoTags": [spec["name"]] if "name" in spec else [],
                     "Layers": paths}]
        with open(os.path.join(d, "manifest.json"), "w") as f:
            json.dump(manifest, f)
        with tarfile.open(out, "w") as t:
            for name in sorted(os.listdir(d)):
                t.add(os.path.join(d, name), arcname=name)
        shutil.rmtree(work)
        return

    layout = out if fmt == "oci" else os.path.join(work, "layout")
    blobs = os.path.join(layout, "blobs", "sha256")
    os.makedirs(blobs)
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(blobs, config_digest), "wb") as f:
        f.write(config_bytes)
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": "sha256:" + config_digest, "size": len(config_bytes)},
                "layers": [{"mediaType": l[4], "digest": "sha256:" + l[2],
                            "size": l[3] + (1 if tamper == "layer-size" and i == 0 else 0)}
                           for i, l in enumerate(layers)]}
    for blob, _, digest, _, _ in layers:
        shutil.copy(blob, os.path.join(blobs, digest))
    if tamper == "layer-byte":
        flip(os.path.join(blobs, layers[0][2]))
    if tamper == "config-byte":
        flip(os.path.join(blobs, config_digest), at=5)
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = hashlib.sha256(manifest_bytes).hexdigest()
    with open(os.path.join(blobs, manifest_digest), "wb") as f:
        f.write(manifest_bytes)
    descriptor = {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "digest": "sha256:" + (manifest_digest if tamper != "manifest" else "1" * 64),
                  "size": len(manifest_bytes)}
    if tamper == "manifest":
        shutil.copy(os.path.join(blobs, manifest_digest), os.path.join(blobs, "1" * 64))
    ref = spec.get("refname", spec.get("name"))
    if ref:
        descriptor["annotations"] = {"org.opencontainers.image.ref.name": ref}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [descriptor]}, f)
    if fmt == "oci-archive":
        with tarfile.open(out, "w") as t:
            for name in sorted(os.listdir(layout)):
                t.add(os.path.join(layout, name), arcname=name)
    shutil.rmtree(work)


def flip(path, at=None):
    with open(path, "r+b") as f:
        size = os.path.getsize(path)
        pos = size // 2 if at is None else at
        f.seek(pos)
        b = f.read(1)
        f.seek(pos)
        f.write(bytes([b[0] ^ 0xFF]))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    with open(sys.argv[1]) as f:
        build(json.load(f), sys.argv[2])
