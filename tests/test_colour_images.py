"""Colour photos through the image kind: RGB decoding at a bounded cost, the preprocessing a
model was trained with (shorter side, centre crop, mean/std), recorded in its archive, and the
pretrained EfficientNet-Lite0's quality check."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from handlers import contracts
from handlers.codec import Limits, Payload, RequestError
from handlers.codecs import image as codec
from handlers.contracts import ImageContract
from handlers.image_decode import decode_colour
from models import efficientnet_lite0 as lite0
from models.registry import SPECS
from tsforge.paths import EXAMPLES

LITE0 = SPECS["efficientnet_lite0"].contract
LITE0_EXAMPLE = SPECS["efficientnet_lite0"].example
LIMITS = Limits()
# Small and plain, so each test says what it checks: 8 x 8 pixels from 12 x 12, no normalisation.
SMALL = ImageContract(labels=("a", "b", "c"), side=8, preprocess="center_crop", channels=3, resize=12)


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def pixels(body: bytes, contract: ImageContract = SMALL, media_type: str = "image/png") -> np.ndarray:
    """One image request's model input, (channels, side, side)."""
    decoded = codec.decode_request(Payload(body, media_type), contract, LIMITS)
    assert decoded.form == "single" and decoded.rows.shape == (1, contract.channels, contract.side, contract.side)
    return decoded.rows[0]


def test_grayscale_is_converted_to_three_equal_channels_not_refused():
    gray = Image.fromarray(np.tile(np.arange(0, 240, 20, dtype=np.uint8), (12, 1)), "L")
    rows = pixels(encoded(gray))
    assert np.array_equal(rows[0], rows[1]) and np.array_equal(rows[1], rows[2])
    assert rows.min() < 0.3 and rows.max() > 0.6  # the gradient survives


def test_transparency_is_composited_onto_white_and_colours_are_kept():
    clear = Image.new("RGBA", (12, 12), (255, 0, 0, 0))  # red, but fully transparent
    assert np.allclose(pixels(encoded(clear)), 1.0)
    red = Image.new("RGBA", (12, 12), (255, 0, 0, 255))
    assert np.allclose(pixels(encoded(red)), np.array([1.0, 0.0, 0.0])[:, None, None])
    palette = Image.new("P", (12, 12), 1)
    palette.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    assert np.allclose(pixels(encoded(palette)), np.array([0.0, 0.0, 1.0])[:, None, None])


def test_exif_orientation_is_applied_as_a_viewer_shows_it():
    upright = Image.new("RGB", (120, 160), (0, 0, 255))
    upright.paste((255, 0, 0), (0, 0, 120, 80))  # red on top, blue below
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a camera held sideways stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    contract = ImageContract(labels=("a",), side=16, preprocess="resize", channels=3)
    rows = pixels(encoded(stored, "JPEG", exif=exif, quality=95), contract, "image/jpeg")
    assert rows[0, :4].mean() > 0.9 and rows[2, :4].mean() < 0.1  # the top is red
    assert rows[2, -4:].mean() > 0.9 and rows[0, -4:].mean() < 0.1  # the bottom is blue


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    values = np.tile(np.linspace(0, 65535, 12).astype(np.uint16), (12, 1))
    deep = Image.fromarray(values)
    assert deep.mode.startswith("I;16")
    rows = pixels(encoded(deep))
    eight = pixels(encoded(Image.fromarray((values / 257).round().astype(np.uint8), "L")))
    assert np.abs(rows - eight).max() < 2 / 255


def test_animated_png_answers_for_its_first_frame():
    first, second = Image.new("RGB", (12, 12), (255, 0, 0)), Image.new("RGB", (12, 12), (0, 255, 0))
    body = encoded(first, save_all=True, append_images=[second])
    assert np.allclose(pixels(body), np.array([1.0, 0.0, 0.0])[:, None, None])


def test_center_crop_matches_resizing_the_shorter_side_then_cropping():
    """On a real photo: the one-step crop and resize is torchvision's Resize(256) + CenterCrop(224)."""
    photo = Image.open(EXAMPLES / LITE0_EXAMPLE).convert("RGB")
    w, h = photo.size
    scale = LITE0.resize / min(w, h)
    resized = photo.resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR)
    left, top = (resized.width - LITE0.side) // 2, (resized.height - LITE0.side) // 2
    reference = np.asarray(resized.crop((left, top, left + LITE0.side, top + LITE0.side)), np.float32) / 255
    ours = codec.colour_pixels(photo, LITE0).transpose(1, 2, 0)
    assert np.abs(ours - reference).mean() < 0.01


def test_a_panorama_keeps_its_short_side_for_the_crop_and_a_huge_one_is_refused_before_decoding():
    wide = encoded(Image.new("RGB", (4000, 600), (10, 200, 30)), "JPEG")
    decoded = decode_colour(wide, LIMITS, LITE0.resize)
    assert min(decoded.size) >= LITE0.resize  # JPEG draft stops before the crop loses detail
    assert max(decoded.size) <= 4000 // 2  # ...but still reduces what it can
    huge = Image.new("RGB", (5000, 5000))
    with pytest.raises(RequestError) as error:
        codec.decode_request(Payload(encoded(huge, "JPEG", quality=10), "image/jpeg"), LITE0, LIMITS)
    assert error.value.status == 413 and error.value.code == "image_too_large"


def test_normalisation_is_the_contracts_mean_and_std():
    grey = encoded(Image.new("RGB", (300, 300), (127, 127, 127)))
    rows = pixels(grey, LITE0)
    assert np.allclose(rows, 0.0, atol=1e-6)  # (127/255 - 127/255) / (128/255)
    imagenet = ImageContract(labels=("a",), side=8, preprocess="resize", channels=3,
                             mean=contracts.IMAGENET_MEAN, std=contracts.IMAGENET_STD)  # fmt: skip
    white = pixels(encoded(Image.new("RGB", (8, 8), (255, 255, 255))), imagenet)
    expected = (1 - np.array(contracts.IMAGENET_MEAN)) / np.array(contracts.IMAGENET_STD)
    assert np.allclose(white[:, 0, 0], expected, atol=1e-6)


def test_json_asks_for_top_k_within_bounds():
    body = base64.b64encode((EXAMPLES / LITE0_EXAMPLE).read_bytes()).decode()
    decoded = codec.decode_request(
        Payload(json.dumps({"image": body, "top_k": 3}).encode(), "application/json"), LITE0, LIMITS
    )
    answer = codec.encode_outputs(np.random.default_rng(0).normal(size=(1, 1000)), decoded, LITE0, "m")
    assert len(answer["probabilities"]) == 3 and answer["label"] == next(iter(answer["probabilities"]))
    plain = codec.decode_request(Payload(json.dumps({"image": body}).encode(), "application/json"), LITE0, LIMITS)
    assert len(codec.encode_outputs(np.zeros((1, 1000)), plain, LITE0, "m")["probabilities"]) == LITE0.top_k
    for bad in (0, 101, "3", True, 2.5, None):
        with pytest.raises(RequestError) as error:
            codec.decode_request(Payload(json.dumps({"image": body, "top_k": bad}).encode()), LITE0, LIMITS)
        assert error.value.status == 400 and error.value.code == "invalid_top_k" and "100" in error.value.detail


def test_json_pixels_take_the_colour_shape():
    rows = np.random.default_rng(1).random((3, 8, 8)).round(3)
    decoded = codec.decode_request(Payload(json.dumps({"pixels": rows.tolist()}).encode()), SMALL, LIMITS)
    assert np.allclose(decoded.rows[0], rows, atol=1e-6)
    with pytest.raises(RequestError) as error:
        codec.decode_request(Payload(json.dumps({"pixels": rows[0].tolist()}).encode()), SMALL, LIMITS)
    assert error.value.code == "wrong_shape" and "[[[3 x 8 x 8 numbers]]]" in error.value.detail


def test_the_archive_records_the_preprocessing_and_describe_and_metadata_say_it():
    assert contracts.from_yaml(contracts.to_yaml(LITE0)) == LITE0
    fields = contracts.to_yaml(LITE0)["contract"]
    assert (fields["side"], fields["resize"], fields["channels"], fields["preprocess"]) == (224, 256, 3, "center_crop")
    assert fields["mean"] == pytest.approx([127 / 255] * 3) and fields["std"] == pytest.approx([128 / 255] * 3)
    said = codec.schema(LITE0)["input"]["preprocessing"]
    assert "RGB" in said and "resized to 256" in said and "central 224x224" in said and "0.498" in said
    assert codec.oip_metadata(LITE0)["inputs"][0]["shape"] == [-1, 3, 224, 224]


@pytest.mark.parametrize(
    "fields",
    [
        {"channels": 2},
        {"channels": 3, "mean": (0.5,), "std": (0.5,)},
        {"channels": 3, "mean": (0.5,) * 3, "std": (0.5, 0.5, 0.0)},
        {"preprocess": "crop"},
        {"preprocess": "center_crop", "resize": 7},
        {"preprocess": "digit", "channels": 3},
        {"top_k": 0},
        {"side": 0},
    ],
)
def test_a_contract_that_cannot_work_is_refused_where_it_is_declared(fields):
    with pytest.raises(ValueError):
        ImageContract(**{"labels": ("a",), "side": 8, **fields})


def test_the_quality_metrics_can_fail():
    """The photo check is only worth its gate if wrong answers lower it."""
    accepted = [[1], [2]]
    metric = lite0.PhotoTop1(accepted)
    photo = torch.tensor([0, 0, 1, 1])
    right = torch.nn.functional.one_hot(torch.tensor([1, 1, 2, 2]), 5).float()
    assert metric(right, photo) == 1.0
    wrong = torch.nn.functional.one_hot(torch.tensor([1, 3, 4, 2]), 5).float()
    assert lite0.PhotoTop1(accepted)(wrong, photo) == 0.5
    assert lite0.Top1Kept()(wrong, photo) == 0.0 and lite0.Top1Kept()(right, photo) == 1.0


def test_the_photos_are_pinned_and_their_classes_exist():
    names = set(lite0.LABELS)
    assert len(lite0.LABELS) == len(names) == 1000
    labelled = [p for p in lite0.photos() if p["classes"]]
    assert len(labelled) == 7 and all(set(p["classes"]) <= names for p in labelled)
    for photo in lite0.photos():
        assert Image.open(io.BytesIO(lite0.photo_bytes(photo))).size[0] > 0  # found and its SHA-256 right
    changed = lite0.variants(lite0.photo_bytes(labelled[0]))
    assert len(changed) == 4 and len(set(changed)) == 4
    mirrored = Image.open(io.BytesIO(changed[3])).convert("RGB")
    original = Image.open(io.BytesIO(changed[0])).convert("RGB")
    assert np.array_equal(np.asarray(ImageOps.mirror(mirrored)), np.asarray(original))


def test_the_readme_states_what_this_build_measured(built):
    """The model table's and the photo section's counts are the build's own (argmax counts:
    the same on every CPU, unlike the last digits of a probability)."""
    readme = (EXAMPLES.parent / "README.md").read_text()
    metrics = json.loads((built.artifacts / "efficientnet_lite0" / "metrics.json").read_text())["test"]
    images, changed = 7 * 4, 7 * 3
    hits, kept = round(metrics["photo_top1"] * images), round(metrics["top1_kept"] * changed)
    assert f"{metrics['photo_top1']:.4f} ({hits} of {images})" in readme
    assert f"{kept} of {changed}" in readme
    for runtime in SPECS["efficientnet_lite0"].formats:
        gates = json.loads((built.artifacts / "efficientnet_lite0" / runtime / "gates.json").read_text())
        assert all(g["passed"] for g in gates) and gates[1]["value"] == metrics["photo_top1"]
        card = json.loads((built.artifacts / "efficientnet_lite0" / runtime / "model_card.json").read_text())
        assert lite0.WEIGHTS_SHA256 in card["provenance"]["weights"] and "Apache-2.0" in card["provenance"]["network"]
        assert card["schema"]["input"]["preprocessing"] == codec.preprocessing(LITE0)


def test_webp_is_decoded_as_a_viewer_shows_it_and_its_cost_read_from_its_headers():
    red = Image.new("RGB", (40, 30), (255, 0, 0))
    for options in ({"quality": 95}, {"lossless": True}):
        rows = pixels(encoded(red, "WEBP", **options), media_type="image/webp")
        assert rows[0].mean() > 0.95 and rows[1].mean() < 0.05
    frames = [Image.new("RGBA", (40, 30), (0, 0, 255, 255)), Image.new("RGBA", (40, 30), (0, 255, 0, 255))]
    animated = encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert pixels(animated)[2].mean() > 0.95  # the first frame: blue
    clear = encoded(Image.new("RGBA", (40, 30), (255, 0, 0, 0)), "WEBP", lossless=True)
    assert np.allclose(pixels(clear), 1.0)  # transparency onto white
    # A VP8X header declaring a 16384 x 16384 canvas: refused from the header, nothing decoded.
    huge = animated  # an animated WebP opens with its canvas (VP8X)
    assert huge[12:16] == b"VP8X"
    huge = huge[:24] + (16383).to_bytes(3, "little") * 2 + huge[30:]
    with pytest.raises(RequestError) as error:
        pixels(huge)
    assert error.value.status == 413 and error.value.code == "image_too_large" and "16384x16384" in error.value.detail


def test_protocol_tensors_take_either_layout_and_uint8():
    """[k, 3, H, W] or [k, H, W, 3]; FP32 in 0..1 or UINT8 in 0..255: the same model input."""
    rng = np.random.default_rng(2)
    hwc = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    chw = hwc.transpose(0, 3, 1, 2)

    def rows(data: np.ndarray, datatype: str) -> np.ndarray:
        doc = {
            "inputs": [{"name": "x", "shape": list(data.shape), "datatype": datatype, "data": data.ravel().tolist()}]
        }
        return codec.decode_request(Payload(json.dumps(doc).encode(), "application/json"), SMALL, LIMITS).rows

    expected = chw.astype(np.float32) / 255
    for data, datatype in (
        (chw, "UINT8"),
        (hwc, "UINT8"),
        (expected, "FP32"),
        (expected.transpose(0, 2, 3, 1), "FP32"),
    ):
        assert np.allclose(rows(data, datatype), expected, atol=1e-6), (data.shape, datatype)
    for data, datatype in ((hwc.astype(np.int32) + 255, "UINT8"), (expected * 2, "FP32"), (chw + 0.5, "UINT8")):
        with pytest.raises(RequestError) as error:
            rows(data, datatype)
        assert error.value.code == "out_of_range"
    with pytest.raises(RequestError) as error:
        rows(chw[:, :, :4], "UINT8")
    assert error.value.code == "wrong_shape" and "[k, 3, 8, 8]" in error.value.detail


def test_the_photo_gate_saw_exactly_what_the_handler_feeds_the_model(built, tmp_path):
    """Preprocessing parity, bit for bit: the gates' inputs come from the codec, and the served
    handler decodes a photo to the same array."""
    from tests.test_handler_inprocess import load

    handler, _ = load(built, "efficientnet_lite0", tmp_path)
    photo = lite0.photos()[0]
    body = lite0.photo_bytes(photo)
    served = codec.decode_request(Payload(body, "image/jpeg"), handler.contract, handler.limits).rows
    assert np.array_equal(served, lite0._model_inputs([body]).numpy())
    assert handler.contract == LITE0


def test_header_sizes_of_every_webp_form_and_thin_or_palette_images_stay_4xx():
    from handlers.image_headers import read_structure

    red = Image.new("RGB", (40, 30), (255, 0, 0))
    frames = [red, Image.new("RGB", (40, 30), (0, 255, 0))]
    for body in (
        encoded(red, "WEBP", quality=90),  # VP8
        encoded(red, "WEBP", lossless=True),  # VP8L
        encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:]),  # VP8X + ANMF
    ):
        _, structure = read_structure(body, LIMITS)
        assert (structure.format, structure.width, structure.height) == ("webp", 40, 30), body[12:16]
    thin = encoded(Image.new("L", (4096, 4), 128), "JPEG")
    for contract in (SMALL, ImageContract(labels=("a",), side=8, preprocess="resize")):
        assert pixels(thin, contract, "image/jpeg").shape[-1] == 8  # decoded, not a 500
    # A 2896 x 2896 palette PNG is 1 KB and 8 MiB as palette indices, but a colour read
    # converts it at full size (4 bytes a pixel): counted so, and refused before decoding.
    palette = Image.new("P", (2896, 2896), 1)
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    with pytest.raises(RequestError) as error:
        pixels(encoded(palette), LITE0)
    assert error.value.status == 413 and "max_decoded_bytes" in error.value.detail
