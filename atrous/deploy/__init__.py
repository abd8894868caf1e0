"""Deployment: BatchNorm folding and the fast inference path, speed benchmarks, ONNX export,
int8 quantization and batch prediction."""
from .fuse import InferenceModel, fuse, prepare_inference, register_folder, unfused_batchnorms

__all__ = ["InferenceModel", "fuse", "prepare_inference", "register_folder", "unfused_batchnorms"]
