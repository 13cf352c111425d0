"""The output folder of a batch run: one record per image as it finishes, a manifest, COCO JSON.

::

    OUT/
      manifest.json      model, settings, versions, counts, per-image id and status (rewritten as it goes)
      annotations.json   COCO instances (images done, their masks, categories), written at the end
      images/            one <name>.json record per image (its status and masks), written atomically
                         when it is done
      .lock              held while a run writes here (a second run on OUT is refused)

The records are the truth: a run that is killed loses at most the images in flight, and the next
run on OUT (``resume``, the default) skips every image that has a record, so no image is done
twice and none is lost. ``annotations.json`` is assembled from the records in the image list's
order, so the same images and settings give the same file whichever runner (local or Ray) and
however many restarts made it.

Image ids (``assign_ids``): the COCO id the prompts file (or ``--image-ids``) gives an image, so
that the output lines up with the source dataset; else the id the image got in OUT's manifest
before; else a new one after the largest in use (1..N on a first run without given ids). An image
keeps its id when others are added to the folder and the run resumed.

Memory: a run keeps only each image's ``brief`` (status, size, counts, reasons: ~100 bytes), never
its masks; ``write_coco`` streams the records' masks from disk into ``annotations.json`` one image
at a time. A folder of 100,000 images with hundreds of masks each fits as well as a dozen.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import time
from pathlib import Path
from typing import Any

from .._io import atomic_write
from ..errors import SamWidgetsError

__all__ = ["OutputFolder", "OutputFolderError", "MANIFEST", "ANNOTATIONS", "RECORDS", "versions", "brief"]

FORMAT = 1
MANIFEST = "manifest.json"
ANNOTATIONS = "annotations.json"
RECORDS = "images"


class OutputFolderError(SamWidgetsError):
    """OUT cannot be used: another run holds it, it was made with other settings, or it is not ours."""


def versions() -> dict[str, str]:
    """Versions of what made the masks (recorded in the manifest)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("sam-widgets", "torch", "segment-anything", "pycocotools", "numpy", "pillow", "ray"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def _differences(old: Any, new: Any, path: str = "") -> list[str]:
    """``"path: old -> new"`` for each value that differs between two nested dicts (``settings.``
    left out of the paths; a digest shortened to 12 characters; ``none`` where a key is missing)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            sub = k if not path or path == "settings" else f"{path}.{k}"
            out += _differences(old.get(k, _MISSING), new.get(k, _MISSING), sub)
        return out
    if old == new:
        return []

    def shown(v: Any) -> str:
        if v is _MISSING or v is None:
            return "none"
        if isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v):
            return v[:12]
        return repr(v)

    return [f"{path}: {shown(old)} -> {shown(new)}"]


_MISSING = object()


def _ids_of(manifest: dict[str, Any]) -> dict[str, int]:
    """Image name -> id in a manifest; one written before ids were recorded numbered its images
    1..N in its order, as its annotations.json did."""
    out = {}
    images = manifest.get("images")
    for i, entry in enumerate(images if isinstance(images, list) else [], start=1):
        if isinstance(entry, dict) and isinstance(entry.get("file_name"), str):
            image_id = entry.get("id", i)
            if isinstance(image_id, int) and not isinstance(image_id, bool):
                out[entry["file_name"]] = image_id
    return out


def brief(record: dict[str, Any]) -> dict[str, Any]:
    """What a run keeps in memory of an image's record: everything but its masks.

    ``{"file_name", "status", "n_annotations", "skipped_prompts": [{"index", "reason"}]}`` and,
    when the record has them, ``reason``, ``width``, ``height``."""
    out = {
        "file_name": record["file_name"],
        "status": record["status"],
        "n_annotations": len(record.get("annotations", [])),
        "skipped_prompts": [
            {"index": s["index"], "reason": s["reason"]} for s in record.get("skipped_prompts", [])
        ],
    }
    for k in ("reason", "width", "height"):
        if k in record:
            out[k] = record[k]
    return out


def record_name(key: str) -> str:
    """The record file of image ``key``: readable, safe on any file system, unique per key."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._")[:80] or "image"
    return f"{safe}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.json"


class OutputFolder:
    """OUT of one run (see the module). Use as a context manager: it holds ``OUT/.lock``."""

    def __init__(self, out: str | os.PathLike, identity: dict[str, Any], *, resume: bool = True) -> None:
        """``identity``: what decides the masks (model, settings, prompts file digest); a resumed
        OUT must have been made with the same, else ``OutputFolderError`` names the differences.
        ``resume=False`` starts over: this folder's earlier records and outputs are removed."""
        self.root = Path(out).expanduser()
        self.identity = identity
        self.resume = resume
        self._lock = None
        self.previous_ids: dict[str, int] = {}  # image ids of the manifest found in OUT
        self.ids: dict[str, int] = {}  # this run's (assign_ids)

    def __enter__(self) -> OutputFolder:
        from filelock import FileLock, Timeout

        if self.root.exists() and not self.root.is_dir():
            raise OutputFolderError(f"--out {self.root} is a file; pass a folder (it is created if missing).")
        manifest = self.root / MANIFEST
        ours = {".lock", RECORDS}
        if (
            self.root.is_dir()
            and not manifest.is_file()
            and any(p.name not in ours and not p.name.startswith(".tmp-") for p in self.root.iterdir())
        ):
            raise OutputFolderError(
                f"--out {self.root} holds files but no {MANIFEST}: it is not the output of "
                "`sam-widgets annotate`. Pass an empty or new folder."
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(self.root / ".lock"))
        try:
            self._lock.acquire(timeout=0)
        except Timeout:
            raise OutputFolderError(
                f"another run is writing {self.root} (it holds {self.root / '.lock'}); wait for it, or "
                "pass another --out."
            ) from None
        try:
            self._open(manifest)
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._lock is not None:
            self._lock.release()

    def _open(self, manifest: Path) -> None:
        records = self.root / RECORDS
        if manifest.is_file() and self.resume:
            try:
                old = json.loads(manifest.read_text(encoding="utf-8"))
                old_identity = old["identity"]
                # folders of earlier versions recorded points per decoder call, which changes no mask,
                # and not the --image-ids file (then unknown: taken as the one given now)
                (old_identity.get("settings", {}).get("everything") or {}).pop("points_per_batch", None)
                if "image_ids" not in old_identity and "image_ids" in self.identity:
                    old_identity["image_ids"] = self.identity["image_ids"]
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                raise OutputFolderError(
                    f"{manifest} is damaged ({e!r}); pass --overwrite to start over, or another --out."
                ) from None
            if old_identity != self.identity:
                diff = _differences(old_identity, self.identity)
                raise OutputFolderError(
                    f"{self.root} was made with other settings (there -> now: {'; '.join(diff)}). "
                    "Resuming would mix masks of two settings: run with the earlier values to "
                    "resume, pass --overwrite to start over, or use another --out."
                )
            self.created = old.get("created")
            self.previous_ids = _ids_of(old)
        else:
            for path in records.glob("*.json") if records.is_dir() else []:
                path.unlink()
            for name in (ANNOTATIONS, MANIFEST):
                (self.root / name).unlink(missing_ok=True)
            self.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.previous_ids = {}
        records.mkdir(exist_ok=True)
        for tmp in list(records.glob(".tmp-*")) + list(self.root.glob(".tmp-*")):
            tmp.unlink(missing_ok=True)  # left by a run killed while writing

    def assign_ids(self, keys: list[str], given: dict[str, int] | None = None) -> dict[str, int]:
        """The COCO image id of each of ``keys`` (see the module): ``given`` (from the prompts or
        ``--image-ids``), else the manifest's from before, else new ones after the largest in use;
        no two images share one. Kept for ``write_manifest`` and ``write_coco``."""
        given = given or {}
        ids = {k: int(given[k]) for k in keys if k in given}
        taken = set(ids.values())
        for k in keys:
            old = self.previous_ids.get(k)
            if k not in ids and old is not None and old not in taken:
                ids[k] = old
                taken.add(old)
        next_id = max([0, *taken, *self.previous_ids.values()]) + 1
        for k in keys:
            if k not in ids:
                ids[k] = next_id
                next_id += 1
        self.ids = ids
        return ids

    # ------------------------------------------------------------------ records

    def record_path(self, key: str) -> Path:
        return self.root / RECORDS / record_name(key)

    def read_record(self, key: str) -> dict[str, Any] | None:
        """The record of ``key`` if it has a whole one (the atomic write makes half ones impossible)."""
        try:
            rec = json.loads(self.record_path(key).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None  # unreadable: the image is done again
        return rec if isinstance(rec, dict) and rec.get("file_name") == key else None

    def done(self, keys: list[str], retry_failed: bool = False) -> dict[str, dict[str, Any]]:
        """The ``brief`` of each record already here for ``keys`` (failed ones left out with
        ``retry_failed``), read one at a time."""
        out = {}
        for key in keys:
            rec = self.read_record(key)
            if rec is not None and not (retry_failed and rec.get("status") != "done"):
                out[key] = brief(rec)
        return out

    def write_record(self, record: dict[str, Any]) -> None:
        atomic_write(self.record_path(record["file_name"]), json.dumps(record).encode())

    # ------------------------------------------------------------------ manifest and COCO

    def write_manifest(
        self, keys: list[str], records: dict[str, dict[str, Any]], extra: dict[str, Any], finished: bool
    ) -> Path:
        """``manifest.json`` from the ``brief`` of each image's record (``records``; full ones work too)."""
        if not self.ids:
            self.assign_ids(keys)
        images = []
        for key in keys:
            rec = records.get(key)
            entry: dict[str, Any] = {
                "file_name": key,
                "id": self.ids[key],
                "status": "pending" if rec is None else rec["status"],
            }
            if rec is not None:
                entry["annotations"] = rec.get("n_annotations", len(rec.get("annotations", [])))
                if rec.get("reason"):
                    entry["reason"] = rec["reason"]
                if rec.get("skipped_prompts"):
                    entry["skipped_prompts"] = [
                        {"index": s["index"], "reason": s["reason"]} for s in rec["skipped_prompts"]
                    ]
            images.append(entry)
        counts = {s: sum(1 for i in images if i["status"] == s) for s in ("done", "failed", "pending")}
        manifest = {
            "format": FORMAT,
            "tool": "sam-widgets annotate",
            "created": self.created,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "finished": finished,
            "identity": self.identity,
            "versions": versions(),
            **extra,
            "counts": counts,
            "images": images,
        }
        path = self.root / MANIFEST
        atomic_write(path, json.dumps(manifest, indent=1).encode())
        return path

    def write_coco(
        self, keys: list[str], records: dict[str, dict[str, Any]], categories: list[dict[str, Any]]
    ) -> Path:
        """``annotations.json``: the done images (in ``keys`` order, ids by ``assign_ids``) and their masks.

        ``records``: the ``brief`` of each image's record. The masks are read from the record
        files one image at a time and written as they are read (never all in memory); the file
        is written atomically, and its bytes are ``json.dumps`` of the whole COCO dict.
        """
        if not self.ids:
            self.assign_ids(keys)
        images = []
        for key in keys:
            rec = records.get(key)
            if rec is None or rec["status"] != "done":
                continue
            images.append(
                {"id": self.ids[key], "file_name": key, "width": rec["width"], "height": rec["height"]}
            )
        info = {
            "description": "made with sam-widgets annotate",
            "version": self.identity.get("settings", {}).get("model", ""),
            "date_created": self.created,
        }
        path = self.root / ANNOTATIONS

        def write(f: Any) -> None:
            head = f'{{"info": {json.dumps(info)}, "images": {json.dumps(images)}, "annotations": ['
            f.write(head.encode())
            n = 0
            for im in images:
                rec = self.read_record(im["file_name"])
                if rec is None or rec.get("status") != "done":
                    raise OutputFolderError(
                        f"the record of {im['file_name']} in {self.root / RECORDS} changed while this "
                        "run wrote; is another process writing OUT? Run again to rebuild the file."
                    )
                for ann in rec["annotations"]:
                    n += 1
                    row = json.dumps({"id": n, "image_id": im["id"], **ann})
                    f.write(((", " if n > 1 else "") + row).encode())
            f.write(f'], "categories": {json.dumps(categories)}}}'.encode())

        return atomic_write(path, write)
