"""Prediction on a video (OpenCV, the ``video`` extra): an overlay video and one class-index PNG
per frame."""
from __future__ import annotations

import os

import numpy as np

from ..errors import UserError
from ..utils import atomic_path
from .outputs import index_image, render, save_png


def open_video(path: str):
    try:
        import cv2
    except ImportError:
        raise UserError("videos need OpenCV: pip install 'atrous[video]' (opencv-python-headless)") from None
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise UserError(f"{path}: OpenCV cannot open this video")
    return cv2, capture


def predict_video(predictor, path: str, video_out: str, frames_dir: str, palette, side_by_side: bool,
                  batch: int, progress: bool = True) -> int:
    """Predict every frame of ``path``: the overlay (or side-by-side) video to ``video_out``
    (written atomically) and ``frames_dir/NNNNNN.png`` class indices. Returns the frame count."""
    from ..progress import progress as progress_bar

    cv2, capture = open_video(path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0) or None
    bar = progress_bar(total=total, desc=os.path.basename(path), unit="frame", disable=not progress)
    os.makedirs(frames_dir, exist_ok=True)
    written, writer = 0, None
    try:
        with atomic_path(video_out) as tmp:
            while True:
                frames = _read_frames(capture, batch)
                if not frames:
                    break
                for frame, labels in zip(frames, predictor(frames)):
                    picture = render(frame, labels, palette, side_by_side)
                    if writer is None:
                        writer = _open_writer(cv2, tmp, video_out, fps, picture.shape)
                    writer.write(np.ascontiguousarray(picture[:, :, ::-1]))
                    save_png(index_image(labels), os.path.join(frames_dir, f"{written:06d}.png"))
                    written += 1
                bar.update(len(frames))
            if writer is not None:
                writer.release()
                writer = None
            if written == 0:
                raise UserError(f"{path}: no frame could be decoded")
    finally:
        if writer is not None:
            writer.release()
        capture.release()
        bar.close()
    return written


def _read_frames(capture, count: int) -> list[np.ndarray]:
    """Up to ``count`` RGB frames (fewer at the end, or where a frame fails to decode)."""
    frames = []
    while len(frames) < count:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
    return frames


def _open_writer(cv2, tmp: str, video_out: str, fps: float, shape):
    h, w = shape[:2]
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise UserError(f"{video_out}: OpenCV cannot write an mp4v video here")
    return writer
