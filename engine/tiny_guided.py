"""Tiny guidance models built from configs with seeded random weights, as `engine.tiny` builds the pipelines:
ControlNets shaped after the tiny UNet of their family, a DPT depth estimator, and IP-Adapters (a CLIP vision
encoder and the adapter's projection and attention weights, matched to the tiny UNet's cross-attention).

Each is written once into `cache_dir/<name>/` in the layout its real counterpart has on the Hugging Face hub,
so it loads through the same code (`ControlNetModel.from_pretrained`, `DPTForDepthEstimation.from_pretrained`,
`load_ip_adapter`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from diffusers import ControlNetModel
from safetensors.torch import save_file
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizer,
    BlipConfig,
    BlipForConditionalGeneration,
    BlipImageProcessor,
    BlipProcessor,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    DPTConfig,
    DPTForDepthEstimation,
    DPTImageProcessor,
    PretrainedConfig,
    ViTConfig,
    ViTForImageClassification,
    ViTImageProcessor,
)

from engine import tiny
from engine.building import seeded
from engine.registry import Preset

BUILD = 2
"""Version of the configs below; a cached build stamped with another version is rebuilt."""

IMAGE_ENCODER_SIZE = 32
IMAGE_EMBED_DIM = 16
IP_TOKENS = 4  # the plain IP-Adapter's image tokens


def ensure_built(preset: Preset, cache_dir: Path) -> Path:
    """The directory of `preset`'s tiny build, building it first when absent or stale."""
    builders = {
        "controlnet": _controlnet,
        "annotator": _depth,
        "ip-adapter": _ip_adapter,
        "captioner": _captioner,
        "interrogator": _interrogator,
        "image-safety": _image_classifier,
        "prompt-safety": _prompt_classifier,
    }
    if preset.role not in builders:
        raise ValueError(f"no tiny guidance builder for role {preset.role!r}")
    target = Path(cache_dir) / preset.name
    stamp = {"build": BUILD, "family": preset.family, "pipeline": preset.pipeline}
    try:
        if json.loads((target / tiny.STAMP).read_text()) == stamp:
            return target
    except (OSError, ValueError):
        pass
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{preset.name}-build-", dir=target.parent))
    try:
        with seeded(tiny.SEED):
            builders[preset.role](preset, staging)
        (staging / tiny.STAMP).write_text(json.dumps(stamp, sort_keys=True))
        tiny._publish(staging, target, preset)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _unet(family: str):
    components = {"sd15": tiny._sd15_components, "sdxl": tiny._sdxl_components}
    if family not in components:
        raise ValueError(f"no tiny UNet for family {family!r}")
    return components[family]()["unet"]


def _controlnet(preset: Preset, directory: Path) -> None:
    # Four conditioning channels counts, so the condition is downsampled by 8 to the latents' size as in the
    # real ControlNets.
    controlnet = ControlNetModel.from_unet(
        _unet(preset.family), conditioning_embedding_out_channels=(4, 8, 8, 16)
    )
    # A trained ControlNet starts from zero convolutions and learns them; random ones make the condition count.
    with torch.no_grad():
        for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            block.weight.copy_(torch.randn_like(block.weight) * 0.1)
    controlnet.save_pretrained(directory)


def _depth(preset: Preset, directory: Path) -> None:
    config = DPTConfig(
        image_size=32,
        patch_size=16,
        hidden_size=32,
        num_hidden_layers=4,
        backbone_out_indices=[0, 1, 2, 3],
        num_attention_heads=4,
        intermediate_size=37,
        neck_hidden_sizes=[16, 16, 32, 32],
        fusion_hidden_size=16,
        head_in_index=-1,
    )
    DPTForDepthEstimation(config).save_pretrained(directory)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(directory)


def _ip_adapter(preset: Preset, directory: Path) -> None:
    unet = _unet(preset.family)
    folder, _, weight_file = (preset.weight_name or "models/ip-adapter.safetensors").rpartition("/")
    encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            projection_dim=IMAGE_EMBED_DIM,
            num_attention_heads=4,
            num_hidden_layers=2,
            image_size=IMAGE_ENCODER_SIZE,
            patch_size=8,
        )
    )
    encoder.save_pretrained(directory / folder / "image_encoder")
    CLIPImageProcessor(
        size={"shortest_edge": IMAGE_ENCODER_SIZE},
        crop_size={"height": IMAGE_ENCODER_SIZE, "width": IMAGE_ENCODER_SIZE},
    ).save_pretrained(directory / folder / "image_encoder")
    save_file(ip_adapter_state_dict(unet), str(directory / folder / weight_file))


CAPTION_WORDS = (
    "a an the photo painting drawing picture of with and in on at by near under over house cat dog person "
    "woman man child tree trees sky city street river mountain sea beach forest field room table flowers car "
    "red blue green yellow white black dark bright old small large night sunset morning"
).split()
"""The tiny captioner's word-piece vocabulary (after BERT's five special tokens): random weights pick among
these, so a tiny caption reads like words."""


def _captioner(preset: Preset, directory: Path) -> None:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CAPTION_WORDS]
    vocab_file = directory / "vocab-source.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    text = {
        "vocab_size": len(vocab),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 37,
        "max_position_embeddings": 40,
        "bos_token_id": vocab.index("[CLS]"),
        "sep_token_id": vocab.index("[SEP]"),
        "eos_token_id": vocab.index("[SEP]"),
        "pad_token_id": vocab.index("[PAD]"),
    }
    vision = {
        "hidden_size": 32,
        "image_size": IMAGE_ENCODER_SIZE,
        "patch_size": 8,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 37,
    }
    BlipForConditionalGeneration(
        BlipConfig(text_config=text, vision_config=vision, projection_dim=16)
    ).save_pretrained(directory)
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": IMAGE_ENCODER_SIZE, "width": IMAGE_ENCODER_SIZE}),
        tokenizer=BertTokenizer(str(vocab_file)),
    )
    processor.save_pretrained(directory)
    vocab_file.unlink()


def _interrogator(preset: Preset, directory: Path) -> None:
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=IMAGE_ENCODER_SIZE,
        patch_size=8,
    )
    config = CLIPConfig(
        text_config=tiny._clip_config().to_dict(), vision_config=vision.to_dict(), projection_dim=16
    )
    CLIPModel(config).save_pretrained(directory)
    CLIPProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": IMAGE_ENCODER_SIZE},
            crop_size={"height": IMAGE_ENCODER_SIZE, "width": IMAGE_ENCODER_SIZE},
        ),
        tokenizer=tiny.clip_tokenizer(),
    ).save_pretrained(directory)


SAFETY_LABELS = {0: "normal", 1: "nsfw"}


def _zero_head(model: torch.nn.Module) -> None:
    """A classification head of zeros: every input scores 0.5 (engine.classifiers), whatever the random body."""
    torch.nn.init.zeros_(model.classifier.weight)
    torch.nn.init.zeros_(model.classifier.bias)


def _classifier_config(config_class: type, **shape: int) -> PretrainedConfig:
    """A one-layer, 8-wide transformer classifier over SAFETY_LABELS; `shape` adds what the kind needs."""
    return config_class(
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        id2label=SAFETY_LABELS,
        label2id={name: index for index, name in SAFETY_LABELS.items()},
        **shape,
    )


def _image_classifier(preset: Preset, directory: Path) -> None:
    """A ViT as small as one works (16 px, one layer): it runs on every output image, so it must cost nearly
    nothing beside the tiny pipelines."""
    model = ViTForImageClassification(_classifier_config(ViTConfig, image_size=16, patch_size=8))
    _zero_head(model)
    model.save_pretrained(directory)
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(directory)


def _prompt_classifier(preset: Preset, directory: Path) -> None:
    """A one-layer BERT over the tiny CLIP tokenizer's byte-level vocabulary."""
    tokenizer = tiny.clip_tokenizer()
    config = _classifier_config(BertConfig, vocab_size=len(tokenizer), max_position_embeddings=128)
    model = BertForSequenceClassification(config)
    _zero_head(model)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def ip_adapter_state_dict(unet, image_embed_dim: int = IMAGE_EMBED_DIM) -> dict[str, torch.Tensor]:
    """Random weights of a plain IP-Adapter for `unet`, in the flat key layout of the published .safetensors
    files: `image_proj.*` (image embedding → 4 tokens) and `ip_adapter.<n>.to_{k,v}_ip.weight` for every
    cross-attention layer, numbered 1, 3, 5, … in the UNet's processor order (as diffusers reads them)."""
    cross = unet.config.cross_attention_dim
    weights = {
        "image_proj.proj.weight": torch.randn(cross * IP_TOKENS, image_embed_dim) * 0.1,
        "image_proj.proj.bias": torch.zeros(cross * IP_TOKENS),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    for index, hidden in enumerate(_cross_attention_widths(unet)):
        key = 1 + 2 * index
        weights[f"ip_adapter.{key}.to_k_ip.weight"] = torch.randn(hidden, cross) * 0.1
        weights[f"ip_adapter.{key}.to_v_ip.weight"] = torch.randn(hidden, cross) * 0.1
    return weights


def _cross_attention_widths(unet) -> list[int]:
    """The hidden width of each cross-attention layer, in processor order."""
    channels = list(unet.config.block_out_channels)
    widths = []
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        if name.startswith("mid_block"):
            widths.append(channels[-1])
        elif name.startswith("up_blocks"):
            widths.append(list(reversed(channels))[int(name[len("up_blocks.")])])
        else:
            widths.append(channels[int(name[len("down_blocks.")])])
    return widths
