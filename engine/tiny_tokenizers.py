"""Tokenizers for the tiny presets, made in code: transformers ships no tokenizer files and tests are offline.

The CLIP tokenizer is byte-level BPE over a 514-entry vocabulary (every byte, alone and word-final, plus the
two special tokens) with no merges; the T5 tokenizer is a Unigram model over printable ASCII. Both are real
tokenizers classes, so they save with the pipeline and reload through `from_pretrained` like downloaded ones.
"""

from __future__ import annotations

import string

from transformers import CLIPTokenizer, T5Tokenizer

CLIP_BOS = "<|startoftext|>"
CLIP_EOS = "<|endoftext|>"
CLIP_MAX_LENGTH = 77
T5_MAX_LENGTH = 512


def _byte_symbols() -> list[str]:
    """The printable stand-in for each byte used by byte-level BPE (GPT-2's table): printable Latin-1
    characters stand for themselves, the other bytes map to code points from 256 up."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    symbols = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[byte] for byte in range(256)]


def clip_vocab() -> dict[str, int]:
    """Token -> id: bytes 0-255, the same bytes ending a word 256-511, then BOS 512 and EOS 513."""
    symbols = _byte_symbols()
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    vocab.update({symbol + "</w>": 256 + index for index, symbol in enumerate(symbols)})
    vocab[CLIP_BOS] = len(vocab)
    vocab[CLIP_EOS] = len(vocab)
    return vocab


def clip_tokenizer() -> CLIPTokenizer:
    """A CLIP tokenizer padding to 77 tokens, as real CLIP text encoders expect."""
    return CLIPTokenizer(vocab=clip_vocab(), merges=[], model_max_length=CLIP_MAX_LENGTH)


def t5_vocab() -> list[tuple[str, float]]:
    """Unigram pieces and log-probabilities: T5's special tokens at ids 0-2, then word starts and characters."""
    characters = string.ascii_letters + string.digits + string.punctuation
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [("▁" + character, -3.0) for character in characters]
    pieces += [(character, -4.0) for character in characters]
    return pieces


def t5_tokenizer() -> T5Tokenizer:
    """A T5 tokenizer without sentinel tokens (an encoder-only model never uses them)."""
    return T5Tokenizer(vocab=t5_vocab(), extra_ids=0, model_max_length=T5_MAX_LENGTH)
