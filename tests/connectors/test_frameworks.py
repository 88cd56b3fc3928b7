"""Canonical chip keys and framework images: table tests of the normaliser, the catalogue and the resolver."""

from __future__ import annotations

import copy
import tomllib
from typing import Any

import pytest

from connectors.chips import alias_table, canonical_chip
from connectors.cloudsim.beta_api import chip_name
from connectors.errors import MetricError, UnknownChip
from connectors.frameworks import IMAGES_FILE, Image, NoImage, load_images, parse_images, resolve
from connectors.metric import STACKS, ChipSpec, load_chips
from node.http.statuses import status_for


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("nvidia-a100", "nvidia-a100"),
        ("A100", "nvidia-a100"),
        ("a100", "nvidia-a100"),
        ("NVIDIA A100", "nvidia-a100"),
        ("nvidia_a100", "nvidia-a100"),
        (" A100 SXM4 80GB ", "nvidia-a100"),
        ("H20", "nvidia-h20"),
        ("H200", "nvidia-h200"),
        ("GeForce RTX 4090", "nvidia-rtx-4090"),
        ("Huawei Ascend 910B", "huawei-ascend-910b"),
        ("昇腾910B", "huawei-ascend-910b"),
        ("MLU370-X8", "cambricon-mlu370"),
        ("Hygon DCU", "hygon-dcu"),
        ("Kunlunxin 2", "kunlunxin-2"),
        ("CPU", "cpu"),
    ],
)
def test_chip_names_normalise_to_one_key(name: str, key: str) -> None:
    """Every spelling people and platforms use for a chip gives its one catalogue key."""
    assert canonical_chip(name) == key


@pytest.mark.parametrize("name", ["H2000", "A10", "nvidia", "", "x" * 201, "Ascend"])
def test_unknown_chip_names_are_refused_not_guessed(name: str) -> None:
    """A name no chip answers to (no prefix matching: A10 is not A100) is UnknownChip, a 400."""
    with pytest.raises(UnknownChip) as caught:
        canonical_chip(name)
    assert status_for(caught.value) == 400
    assert caught.value.code == "unknown_chip"


def test_every_chip_is_reachable_from_its_platform_spelling() -> None:
    """Each catalogue key comes back from beta's upper-case underscore spelling of it, and has a stack."""
    for key, spec in load_chips().items():
        assert canonical_chip(chip_name(key)) == key
        assert spec.stack in STACKS


def test_two_chips_claiming_one_name_is_an_error() -> None:
    """An alias shared by two chips makes the table refuse to build, instead of picking one."""
    chips = load_chips()
    a100, h100 = chips["nvidia-a100"], chips["nvidia-h100"]
    clash = ChipSpec(**{**h100.__dict__, "aliases": (*h100.aliases, "A100")})
    with pytest.raises(UnknownChip, match="claimed by both"):
        alias_table({a100.key: a100, clash.key: clash})


@pytest.mark.parametrize(
    ("spec", "chip", "expected"),
    [
        ("pytorch>=2.4", "nvidia-a100", "pytorch/pytorch:2.7.0-cuda12.8-cudnn9-devel"),
        ("pytorch>=2.4,<2.6", "A100", "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"),
        ("torch==2.3.0", "NVIDIA H100", "ghcr.io/pytorch/pytorch:2.3.0-cuda11.8-cudnn8-runtime"),
        ("PyTorch", "cpu", "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"),
        ("pytorch>=2.4", "huawei-ascend-910b", "quay.io/ascend/pytorch:2.8.0.post4-910b-ubuntu22.04-py3.11"),
        (
            "paddle",
            "hygon-dcu",
            "ccr-2vdh3abv-pub.cnc.bj.baidubce.com/device/paddle-dcu:3.0.0-dtk24.04.1-kylinv10-gcc82-py310",
        ),
        (
            "paddlepaddle",
            "MLU370",
            "ccr-2vdh3abv-pub.cnc.bj.baidubce.com/device/paddle-mlu:ctr2.15.0-ubuntu20-gcc84-py310",
        ),
        (
            "paddlepaddle>=2.6",
            "kunlunxin-2",
            "ccr-2vdh3abv-pub.cnc.bj.baidubce.com/device/paddle-xpu:ubuntu20-x86_64-gcc84-py310",
        ),
        ("tensorflow~=2.17", "cpu", "tensorflow/tensorflow:2.17.0"),
        ("vllm", "Ascend 910B", "quay.io/ascend/vllm-ascend:v0.13.0"),
        ("mindspore", "nvidia-h100", "no_image_for_chip"),
        ("tensorflow", "huawei-ascend-910b", "no_image_for_chip"),
        ("pytorch<2", "cpu", "no_matching_version"),
        ("vllm>=1", "nvidia-a100", "no_matching_version"),
        ("caffe", "cpu", "unknown_framework"),
        ("pytorch", "H2000", "unknown_chip"),
        ("pytorch>=>2", "cpu", "bad_spec"),
        ("pytorch[cuda]", "cpu", "bad_spec"),
        ("", "cpu", "bad_spec"),
    ],
)
def test_resolver_picks_the_newest_allowed_image_for_the_chip(spec: str, chip: str, expected: str) -> None:
    """The resolver answers the highest version the spec allows for the chip's stack, or why none fits."""
    found = resolve(spec, chip)
    if isinstance(found, Image):
        assert found.reference == expected
        assert found.source.startswith("https://")
    else:
        assert isinstance(found, NoImage)
        assert found.reason == expected, found.message


def test_every_chip_stack_has_images_and_every_image_a_source() -> None:
    """The shipped catalogue covers every stack a chip declares, plus CPU, each image with its source."""
    images = load_images().images
    assert {image.stack for image in images} >= {*STACKS, "cpu"}
    assert {image.framework for image in images} >= {
        "pytorch",
        "tensorflow",
        "paddlepaddle",
        "mindspore",
        "vllm",
    }
    assert all(image.source.startswith("https://") for image in images)


def _shipped() -> dict[str, Any]:
    with IMAGES_FILE.open("rb") as handle:
        return tomllib.load(handle)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["image"][0].pop("source"), "public source"),
        (lambda d: d["image"][0].update(source="http://example.com"), "public source"),
        (lambda d: d["image"][0].update(version="two"), "PEP 440"),
        (lambda d: d["image"][0].update(stack="tpu"), "stack must be one of"),
        (lambda d: d["image"][0].update(tag="x"), "unknown field"),
        (lambda d: d["image"].append(dict(d["image"][0])), "listed twice"),
        (lambda d: d["aliases"].update(keras="keras"), "no image"),
        (lambda d: d.update(image=[]), "no \\[\\[image\\]\\]"),
    ],
)
def test_the_loader_refuses_bad_catalogues(change: Any, message: str) -> None:
    """An image without an https source, a bad version or stack, an unknown field, a duplicate or a
    dangling alias is refused with the entry named."""
    data = copy.deepcopy(_shipped())
    change(data)
    with pytest.raises(MetricError, match=message):
        parse_images(data)
