"""Class names, colour palettes and label-id tables of the datasets atrous knows.

Every mask atrous hands to a model holds train ids ``0 .. num_classes-1`` or ``IGNORE_INDEX``
(255), whatever the dataset stores on disk; the tables here do that conversion.
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError

IGNORE_INDEX = 255

# --------------------------------------------------------------------------- Cityscapes
# Cordts et al. 2016, cityscapesScripts labels.py: the 19 evaluated classes (trainId order).
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)
CITYSCAPES_PALETTE = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32),
)
# labelId -> trainId for the 34 labelIds 0..33 of *_gtFine_labelIds.png; the 15 labelIds that are
# not evaluated (unlabeled, ego vehicle, ..., license plate) map to IGNORE_INDEX.
CITYSCAPES_LABEL_TO_TRAIN = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
CITYSCAPES_NUM_LABEL_IDS = 34

# --------------------------------------------------------------------------- CamVid
# The 11-class protocol (SegNet, Badrinarayanan et al.); index 11 of the SegNet masks is void.
CAMVID_CLASSES = (
    "sky", "building", "pole", "road", "sidewalk", "tree", "sign/symbol", "fence", "car",
    "pedestrian", "bicyclist",
)
CAMVID_PALETTE = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (0, 0, 192), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)
CAMVID_SEGNET_VOID = 11
# The original CamVid labels have 32 classes (class_dict.csv); the usual merge into the 11 classes
# (the grouping SegNet's prepared data uses). Names are compared case-insensitively.
CAMVID_32_TO_11 = {
    "sky": 0,
    "archway": 1, "bridge": 1, "building": 1, "tunnel": 1, "wall": 1,
    "column_pole": 2, "trafficcone": 2,
    "road": 3, "lanemkgsdriv": 3, "lanemkgsnondriv": 3,
    "sidewalk": 4, "parkingblock": 4, "roadshoulder": 4,
    "tree": 5, "vegetationmisc": 5,
    "signsymbol": 6, "misc_text": 6, "trafficlight": 6,
    "fence": 7,
    "car": 8, "suvpickuptruck": 8, "truck_bus": 8, "train": 8, "othermoving": 8,
    "pedestrian": 9, "child": 9, "cartluggagepram": 9, "animal": 9,
    "bicyclist": 10, "motorcyclescooter": 10,
    "void": IGNORE_INDEX,
}

# --------------------------------------------------------------------------- ADE20K
# SceneParsing ADEChallengeData2016 objectInfo150 (first name of each entry); mask value k is class
# k-1, 0 is "other" -> ignore.
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)

# --------------------------------------------------------------------------- Mapillary Vistas
# Neuhold et al. 2017. The labels of the release's config_v1.2.json and config_v2.0.json, in file
# order, as (readable name, colour): mask value k is entry k. The last entry, "Unlabeled" (65 in
# v1.2, 123 in v2.0), is ignored by default (atrous/data/mapillary.py). v2.0's "Lane Marking
# (only) - Test" is spelled as in the release (it marks text).
MAPILLARY_V12_LABELS = (
    ("Bird", (165, 42, 42)), ("Ground Animal", (0, 192, 0)), ("Curb", (196, 196, 196)),
    ("Fence", (190, 153, 153)), ("Guard Rail", (180, 165, 180)), ("Barrier", (90, 120, 150)),
    ("Wall", (102, 102, 156)), ("Bike Lane", (128, 64, 255)),
    ("Crosswalk - Plain", (140, 140, 200)), ("Curb Cut", (170, 170, 170)),
    ("Parking", (250, 170, 160)), ("Pedestrian Area", (96, 96, 96)),
    ("Rail Track", (230, 150, 140)), ("Road", (128, 64, 128)), ("Service Lane", (110, 110, 110)),
    ("Sidewalk", (244, 35, 232)), ("Bridge", (150, 100, 100)), ("Building", (70, 70, 70)),
    ("Tunnel", (150, 120, 90)), ("Person", (220, 20, 60)), ("Bicyclist", (255, 0, 0)),
    ("Motorcyclist", (255, 0, 100)), ("Other Rider", (255, 0, 200)),
    ("Lane Marking - Crosswalk", (200, 128, 128)), ("Lane Marking - General", (255, 255, 255)),
    ("Mountain", (64, 170, 64)), ("Sand", (230, 160, 50)), ("Sky", (70, 130, 180)),
    ("Snow", (190, 255, 255)), ("Terrain", (152, 251, 152)), ("Vegetation", (107, 142, 35)),
    ("Water", (0, 170, 30)), ("Banner", (255, 255, 128)), ("Bench", (250, 0, 30)),
    ("Bike Rack", (100, 140, 180)), ("Billboard", (220, 220, 220)),
    ("Catch Basin", (220, 128, 128)), ("CCTV Camera", (222, 40, 40)),
    ("Fire Hydrant", (100, 170, 30)), ("Junction Box", (40, 40, 40)), ("Mailbox", (33, 33, 33)),
    ("Manhole", (100, 128, 160)), ("Phone Booth", (142, 0, 0)), ("Pothole", (70, 100, 150)),
    ("Street Light", (210, 170, 100)), ("Pole", (153, 153, 153)),
    ("Traffic Sign Frame", (128, 128, 128)), ("Utility Pole", (0, 0, 80)),
    ("Traffic Light", (250, 170, 30)), ("Traffic Sign (Back)", (192, 192, 192)),
    ("Traffic Sign (Front)", (220, 220, 0)), ("Trash Can", (140, 140, 20)),
    ("Bicycle", (119, 11, 32)), ("Boat", (150, 0, 255)), ("Bus", (0, 60, 100)),
    ("Car", (0, 0, 142)), ("Caravan", (0, 0, 90)), ("Motorcycle", (0, 0, 230)),
    ("On Rails", (0, 80, 100)), ("Other Vehicle", (128, 64, 64)), ("Trailer", (0, 0, 110)),
    ("Truck", (0, 0, 70)), ("Wheeled Slow", (0, 0, 192)), ("Car Mount", (32, 32, 32)),
    ("Ego Vehicle", (120, 10, 10)), ("Unlabeled", (0, 0, 0)),
)

MAPILLARY_V20_LABELS = (
    ("Bird", (165, 42, 42)), ("Ground Animal", (0, 192, 0)), ("Ambiguous Barrier", (250, 170, 31)),
    ("Concrete Block", (250, 170, 32)), ("Curb", (196, 196, 196)), ("Fence", (190, 153, 153)),
    ("Guard Rail", (180, 165, 180)), ("Barrier", (90, 120, 150)), ("Road Median", (250, 170, 33)),
    ("Road Side", (250, 170, 34)), ("Lane Separator", (128, 128, 128)),
    ("Temporary Barrier", (250, 170, 35)), ("Wall", (102, 102, 156)), ("Bike Lane", (128, 64, 255)),
    ("Crosswalk - Plain", (140, 140, 200)), ("Curb Cut", (170, 170, 170)),
    ("Driveway", (250, 170, 36)), ("Parking", (250, 170, 160)), ("Parking Aisle", (250, 170, 37)),
    ("Pedestrian Area", (96, 96, 96)), ("Rail Track", (230, 150, 140)), ("Road", (128, 64, 128)),
    ("Road Shoulder", (110, 110, 110)), ("Service Lane", (110, 110, 110)),
    ("Sidewalk", (244, 35, 232)), ("Traffic Island", (128, 196, 128)), ("Bridge", (150, 100, 100)),
    ("Building", (70, 70, 70)), ("Garage", (150, 150, 150)), ("Tunnel", (150, 120, 90)),
    ("Person", (220, 20, 60)), ("Person Group", (220, 20, 60)), ("Bicyclist", (255, 0, 0)),
    ("Motorcyclist", (255, 0, 100)), ("Other Rider", (255, 0, 200)),
    ("Lane Marking - Dashed Line", (255, 255, 255)),
    ("Lane Marking - Straight Line", (255, 255, 255)),
    ("Lane Marking - Zigzag Line", (250, 170, 29)), ("Lane Marking - Ambiguous", (250, 170, 28)),
    ("Lane Marking - Arrow (Left)", (250, 170, 26)),
    ("Lane Marking - Arrow (Other)", (250, 170, 25)),
    ("Lane Marking - Arrow (Right)", (250, 170, 24)),
    ("Lane Marking - Arrow (Split Left or Straight)", (250, 170, 22)),
    ("Lane Marking - Arrow (Split Right or Straight)", (250, 170, 21)),
    ("Lane Marking - Arrow (Straight)", (250, 170, 20)),
    ("Lane Marking - Crosswalk", (255, 255, 255)),
    ("Lane Marking - Give Way (Row)", (250, 170, 19)),
    ("Lane Marking - Give Way (Single)", (250, 170, 18)),
    ("Lane Marking - Hatched (Chevron)", (250, 170, 12)),
    ("Lane Marking - Hatched (Diagonal)", (250, 170, 11)),
    ("Lane Marking - Other", (255, 255, 255)), ("Lane Marking - Stop Line", (255, 255, 255)),
    ("Lane Marking - Symbol (Bicycle)", (250, 170, 16)),
    ("Lane Marking - Symbol (Other)", (250, 170, 15)), ("Lane Marking - Text", (250, 170, 15)),
    ("Lane Marking (only) - Dashed Line", (255, 255, 255)),
    ("Lane Marking (only) - Crosswalk", (255, 255, 255)),
    ("Lane Marking (only) - Other", (255, 255, 255)),
    ("Lane Marking (only) - Test", (255, 255, 255)), ("Mountain", (64, 170, 64)),
    ("Sand", (230, 160, 50)), ("Sky", (70, 130, 180)), ("Snow", (190, 255, 255)),
    ("Terrain", (152, 251, 152)), ("Vegetation", (107, 142, 35)), ("Water", (0, 170, 30)),
    ("Banner", (255, 255, 128)), ("Bench", (250, 0, 30)), ("Bike Rack", (100, 140, 180)),
    ("Catch Basin", (220, 128, 128)), ("CCTV Camera", (222, 40, 40)),
    ("Fire Hydrant", (100, 170, 30)), ("Junction Box", (40, 40, 40)), ("Mailbox", (33, 33, 33)),
    ("Manhole", (100, 128, 160)), ("Parking Meter", (20, 20, 255)), ("Phone Booth", (142, 0, 0)),
    ("Pothole", (70, 100, 150)), ("Signage - Advertisement", (250, 171, 30)),
    ("Signage - Ambiguous", (250, 172, 30)), ("Signage - Back", (250, 173, 30)),
    ("Signage - Information", (250, 174, 30)), ("Signage - Other", (250, 175, 30)),
    ("Signage - Store", (250, 176, 30)), ("Street Light", (210, 170, 100)),
    ("Pole", (153, 153, 153)), ("Pole Group", (153, 153, 153)),
    ("Traffic Sign Frame", (128, 128, 128)), ("Utility Pole", (0, 0, 80)),
    ("Traffic Cone", (210, 60, 60)), ("Traffic Light - General (Single)", (250, 170, 30)),
    ("Traffic Light - Pedestrians", (250, 170, 30)),
    ("Traffic Light - General (Upright)", (250, 170, 30)),
    ("Traffic Light - General (Horizontal)", (250, 170, 30)),
    ("Traffic Light - Cyclists", (250, 170, 30)), ("Traffic Light - Other", (250, 170, 30)),
    ("Traffic Sign - Ambiguous", (192, 192, 192)), ("Traffic Sign (Back)", (192, 192, 192)),
    ("Traffic Sign - Direction (Back)", (192, 192, 192)),
    ("Traffic Sign - Direction (Front)", (220, 220, 0)), ("Traffic Sign (Front)", (220, 220, 0)),
    ("Traffic Sign - Parking", (0, 0, 196)), ("Traffic Sign - Temporary (Back)", (192, 192, 192)),
    ("Traffic Sign - Temporary (Front)", (220, 220, 0)), ("Trash Can", (140, 140, 20)),
    ("Bicycle", (119, 11, 32)), ("Boat", (150, 0, 255)), ("Bus", (0, 60, 100)),
    ("Car", (0, 0, 142)), ("Caravan", (0, 0, 90)), ("Motorcycle", (0, 0, 230)),
    ("On Rails", (0, 80, 100)), ("Other Vehicle", (128, 64, 64)), ("Trailer", (0, 0, 110)),
    ("Truck", (0, 0, 70)), ("Vehicle Group", (0, 0, 142)), ("Wheeled Slow", (0, 0, 192)),
    ("Water Valve", (170, 170, 170)), ("Car Mount", (32, 32, 32)), ("Dynamic", (111, 74, 0)),
    ("Ego Vehicle", (120, 10, 10)), ("Ground", (81, 0, 81)), ("Static", (111, 111, 0)),
    ("Unlabeled", (0, 0, 0)),
)
MAPILLARY_UNLABELED = "Unlabeled"
# RegSeg's official code (datasets/mapillary.py, reduce_mask) trains a 45-class Mapillary v1.2: it
# keeps the classes its v1.2 model scored above 30% IoU and ignores these 20 with "Unlabeled".
MAPILLARY_REGSEG_DROPPED = (
    "Bird", "Ground Animal", "Curb Cut", "Parking", "Other Rider", "Sand", "Banner", "Bench",
    "Bike Rack", "Catch Basin", "CCTV Camera", "Fire Hydrant", "Mailbox", "Phone Booth", "Pothole",
    "Boat", "Caravan", "Other Vehicle", "Trailer", "Wheeled Slow",
)


def labels_without(labels, dropped) -> tuple[tuple, tuple]:
    """(names, palette) of ``labels`` without the names in ``dropped``."""
    kept = [(name, colour) for name, colour in labels if name not in dropped]
    return tuple(n for n, _ in kept), tuple(c for _, c in kept)


MAPILLARY_V12_CLASSES, MAPILLARY_V12_PALETTE = labels_without(MAPILLARY_V12_LABELS, {MAPILLARY_UNLABELED})
MAPILLARY_V20_CLASSES, MAPILLARY_V20_PALETTE = labels_without(MAPILLARY_V20_LABELS, {MAPILLARY_UNLABELED})

# --------------------------------------------------------------------------- toy (RegSeg Sec 3.6)
TOY_CLASSES = ("background", "rectangle 1", "rectangle 2", "rectangle 3")


def toy_classes(num_classes: int) -> tuple[str, ...]:
    """Background plus ``num_classes - 1`` rectangle classes."""
    if num_classes < 2:
        raise UserError(f"toy num_classes={num_classes}: need at least 2 (background + 1)")
    return ("background",) + tuple(f"rectangle {k}" for k in range(1, num_classes))


def palette_for(names) -> tuple[tuple[int, int, int], ...]:
    """A deterministic palette for any class list: the PASCAL VOC bit-interleaved colour map,
    started at index 1 so that no class is black (black reads as ignore in pictures). It depends
    only on the number of classes, so the same list always gets the same colours."""
    colours = []
    for index in range(1, len(names) + 1):
        r = g = b = 0
        c = index
        for bit in range(7, -1, -1):
            r |= ((c >> 0) & 1) << bit
            g |= ((c >> 1) & 1) << bit
            b |= ((c >> 2) & 1) << bit
            c >>= 3
            if c == 0:
                break
        colours.append((r, g, b))
    return tuple(colours)


CLASS_NAMES = {
    "cityscapes": CITYSCAPES_CLASSES,
    "bdd100k": CITYSCAPES_CLASSES,  # BDD100K semantic masks use the Cityscapes 19 trainIds.
    "camvid": CAMVID_CLASSES,
    "ade20k": ADE20K_CLASSES,
    "mapillary": MAPILLARY_V12_CLASSES,  # the loader's defaults: v1.2, "Unlabeled" ignored
    "mapillary_v2.0": MAPILLARY_V20_CLASSES,
    "toy": TOY_CLASSES,
}
PALETTES = {
    "cityscapes": CITYSCAPES_PALETTE,
    "bdd100k": CITYSCAPES_PALETTE,
    "camvid": CAMVID_PALETTE,
    "ade20k": palette_for(ADE20K_CLASSES),
    "mapillary": MAPILLARY_V12_PALETTE,
    "mapillary_v2.0": MAPILLARY_V20_PALETTE,
    "toy": ((0, 0, 0),) + palette_for(TOY_CLASSES[1:]),
}


def lut(mapping: dict[int, int], size: int = 256) -> np.ndarray:
    """A lookup table raw value -> train id: ``mapping`` entries, every other value -1 (invalid)."""
    table = np.full(size, -1, dtype=np.int64)
    for raw, train in mapping.items():
        table[raw] = train
    return table


def identity_lut(num_classes: int, ignore: tuple[int, ...] = (IGNORE_INDEX,)) -> np.ndarray:
    """Values ``0..num_classes-1`` stay, values in ``ignore`` become IGNORE_INDEX, others invalid."""
    mapping = {k: k for k in range(num_classes)}
    mapping.update({v: IGNORE_INDEX for v in ignore})
    return lut(mapping)


def cityscapes_label_lut() -> np.ndarray:
    """labelIds (0..33) -> trainIds; unevaluated ids -> IGNORE_INDEX; anything else invalid."""
    mapping = {k: IGNORE_INDEX for k in range(CITYSCAPES_NUM_LABEL_IDS)}
    mapping.update(CITYSCAPES_LABEL_TO_TRAIN)
    return lut(mapping)


def colorize(mask: np.ndarray, palette, ignore_colour=(0, 0, 0)) -> np.ndarray:
    """HxW train ids -> HxWx3 uint8 picture; ignore (and any id past the palette) -> ``ignore_colour``."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[:] = ignore_colour
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    return table[np.clip(mask, 0, 255).astype(np.intp)]
