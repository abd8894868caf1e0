"""Draw the pictures of docs/data.md: toy samples and class-uniform CamVid crops after the train
transforms. Run from the repository root: PYTHONPATH=. python scripts/data_pictures.py"""
import warnings
import torch
from atrous.data import ClassUniformSampler, build_dataset
from atrous.data.preview import save_preview

torch.set_num_threads(1)
toy = build_dataset({"dataset": "toy", "size": 128, "widths": [4, 8, 16], "count": 8,
                     "transforms": {"train": {"scale": {"factor": [0.75, 1.25]}, "crop": [128, 128], "hflip": 0.5}}},
                    "train", train=True)
save_preview(toy, [0, 1, 2, 3], "docs/images/data_toy.png", columns=2)
cv = build_dataset({"dataset": "camvid", "root": "../shared/data/camvid",
                    "transforms": {"train": {"scale": {"shorter_side": [180, 540]}, "crop": [200, 200], "hflip": 0.5,
                                             "randaug": {"num_ops": 2, "magnitude": 0.2}}}}, "train", train=True)
cv.files = cv.files[::40]  # 10 frames
warnings.simplefilter("ignore")  # some classes are absent from 10 frames
requests = list(ClassUniformSampler(cv, percent=1.0, num_samples=3, seed=0, progress=False))
print([cv.classes[r.class_id] for r in requests])
save_preview(cv, requests, "docs/images/data_camvid_class_uniform.png", columns=3)
