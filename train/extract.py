"""Precompute frames and quantised flow for a dataset with the runtime's own code (stream.core.offline and
stream.core.flow).

Output layout (OUT/):
  extract.json            input size, flow settings, classes, finished videos, failures
  <class>/<name>.npz      frames (N, S, S, 3) uint8 RGB, flows (N-1, S, S, 2) uint8 (flow i-1 ends at frame i),
                          with --camera-motion K also flows_cm (K, N-1, S, S, 2): flow of K camera-moved copies
                          (train.camera_motion; training draws the clean flow or a variant per sample)
  <class>/<name>.json     per-video sidecar written after the .npz: marks the video as finished (resume)

uint8 npz (zlib) is lossless, so training sees exactly the values the runtime computes from
the same video; JPEG would be smaller but would change them. No torch here.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream.core.errors import ConfigError, SourceError
from stream.core.flow import FlowSettings
from stream.core.offline import read_video, video_flows
from train.datasets import scan_folder_per_class

INDEX_FILE = "extract.json"
FORMAT = "twostream-extract-1"


@dataclass(frozen=True)
class ExtractJob:
    source: str  # absolute video path
    rel: str  # class/name.ext
    out_npz: str
    size: int
    flow: dict
    max_frames: int
    camera_motion: int = 0  # K camera-moved flow variants (0: none)
    camera_seed: int = 0


def npz_rel(rel: str) -> str:
    return rel.rsplit(".", 1)[0] + ".npz"


def extract_one(job: ExtractJob) -> tuple[str, int, str]:
    """Decode + flow one video; returns (rel, frames, error message or '')."""
    try:
        frames = read_video(job.source, job.size, max_frames=job.max_frames)
        if len(frames) < 2:
            raise SourceError(f"{job.source}: only {len(frames)} frame decoded, flow needs at least 2")
        flows = video_flows(frames, FlowSettings(**job.flow))
        arrays = {"frames": frames, "flows": flows}
        if job.camera_motion:
            from train.camera_motion import camera_motion_flows

            arrays["flows_cm"] = camera_motion_flows(job.source, job.rel, size=job.size, flow=FlowSettings(**job.flow),
                                                     variants=job.camera_motion, seed=job.camera_seed,
                                                     max_frames=job.max_frames, expect_frames=len(frames))
        out = Path(job.out_npz)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + f".tmp{os.getpid()}.npz")
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, out)  # atomic: a killed run never leaves a half file that looks finished
        out.with_suffix(".json").write_text(json.dumps({"source": job.rel, "frames": int(len(frames))}))
        return job.rel, int(len(frames)), ""
    except SourceError as exc:
        return job.rel, 0, str(exc)
    except Exception as exc:  # a corrupt file can make OpenCV/numpy fail in many ways; report, never hide
        return job.rel, 0, f"{job.source}: {type(exc).__name__}: {exc}"


def finished(out_dir: Path, rel: str) -> int:
    """Frame count of an already extracted video, 0 if not finished."""
    side = (out_dir / npz_rel(rel)).with_suffix(".json")
    if not side.is_file() or not (out_dir / npz_rel(rel)).is_file():
        return 0
    try:
        return int(json.loads(side.read_text())["frames"])
    except (ValueError, KeyError, TypeError):
        return 0


def extract_dataset(data: str | Path, out: str | Path, *, size: int = 112, flow: FlowSettings | None = None,
                    max_frames: int = 0, workers: int = 2, progress: bool = True, camera_motion: int = 0,
                    camera_seed: int = 0) -> dict:
    """Extract every video of a folder-per-class dataset; resumable. Returns the index written to extract.json.

    camera_motion K > 0 also stores K camera-moved flow variants per video (train.camera_motion).
    """
    from tqdm import tqdm

    flow = (flow or FlowSettings()).validate()
    dataset = scan_folder_per_class(data)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    index_path = out_dir / INDEX_FILE
    settings = {"input_size": int(size), "flow": flow.as_dict(), "max_frames": int(max_frames)}
    if camera_motion:  # key only when used: older extract.json files compare equal without it
        from train.camera_motion import describe

        settings["camera_motion"] = describe(camera_motion, camera_seed)
    if index_path.is_file():
        old = json.loads(index_path.read_text())
        old_settings = {k: old.get(k) for k in settings}
        if old.get("camera_motion") and "camera_motion" not in settings:
            old_settings["camera_motion"] = old["camera_motion"]
        if old_settings != settings:
            raise ConfigError(f"{out_dir} holds an extraction with different settings {old_settings}; "
                              f"use another output folder")
    index_path.write_text(json.dumps({"format": FORMAT, **settings, "source": str(Path(data).resolve()),
                                      "classes": dataset.classes, "videos": {}, "failed": {}}, indent=1))
    videos, failed, jobs = {}, {}, []
    for item in dataset.items:
        n = finished(out_dir, item.rel)
        if n:
            videos[item.rel] = {"file": npz_rel(item.rel), "frames": n, "label": item.label}
        else:
            jobs.append(ExtractJob(str((dataset.root / item.rel).resolve()), item.rel,
                                   str(out_dir / npz_rel(item.rel)), int(size), flow.as_dict(), int(max_frames),
                                   int(camera_motion), int(camera_seed)))
    labels = {it.rel: it.label for it in dataset.items}
    bar = tqdm(total=len(jobs), desc="extract", unit="video", disable=not progress)
    if jobs:
        if workers > 1 and len(jobs) > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
                results = pool.imap_unordered(extract_one, jobs)
                for rel, n, err in results:
                    _record(rel, n, err, labels, videos, failed, bar)
        else:
            for job in jobs:
                _record(*extract_one(job), labels, videos, failed, bar)
    bar.close()
    index = {"format": FORMAT, **settings, "source": str(Path(data).resolve()), "classes": dataset.classes,
             "videos": dict(sorted(videos.items())), "failed": dict(sorted(failed.items())),
             "skipped_already_done": len(dataset.items) - len(jobs)}
    index_path.write_text(json.dumps(index, indent=1))
    return index


def _record(rel, n, err, labels, videos, failed, bar) -> None:
    if err:
        failed[rel] = err
        bar.write(f"skipped (corrupt or unreadable): {err}")
    else:
        videos[rel] = {"file": npz_rel(rel), "frames": n, "label": labels[rel]}
    bar.update(1)


def read_index(extracted: str | Path) -> dict:
    """Load and sanity-check an extraction's extract.json."""
    path = Path(extracted) / INDEX_FILE
    if not path.is_file():
        raise ConfigError(f"{extracted}: no {INDEX_FILE}; run `twostream extract DATA {extracted}` first")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT:
        raise ConfigError(f"{path}: unknown format {index.get('format')!r} (expected {FORMAT})")
    return index


def is_extracted(path: str | Path) -> bool:
    return (Path(path) / INDEX_FILE).is_file()


def load_video(extracted: str | Path, entry: dict, *, frames: bool = True, flows: bool = True):
    """(frames or None, flows or None) of one extracted video; the file name is checked to stay inside."""
    with np.load(_video_path(extracted, entry), allow_pickle=False) as z:
        return (z["frames"] if frames else None), (z["flows"] if flows else None)


def load_flow_variants(extracted: str | Path, entry: dict) -> np.ndarray:
    """(1 + K, N-1, S, S, 2) uint8: the clean flow, then the K camera-moved variants (if extracted with them)."""
    with np.load(_video_path(extracted, entry), allow_pickle=False) as z:
        clean = z["flows"]
        if "flows_cm" not in z.files:
            return clean[None]
        moved = z["flows_cm"]
    if moved.ndim != 5 or moved.shape[1:] != clean.shape:
        raise ConfigError(f"{extracted}: {entry['file']}: flows_cm {moved.shape} does not match flows {clean.shape}")
    return np.concatenate([clean[None], moved])


def _video_path(extracted: str | Path, entry: dict) -> Path:
    root = Path(extracted).resolve()
    path = (root / entry["file"]).resolve()
    if root not in path.parents:
        raise ConfigError(f"{root / INDEX_FILE}: video file {entry['file']!r} points outside the extraction")
    return path
