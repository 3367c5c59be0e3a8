"""Build a tiny random Qwen3 model folder offline, for mlx-lm plumbing tests.

The folder has what ``mlx_lm.load`` expects from a Hugging Face checkpoint:
``config.json``, ``model.safetensors`` and a fast tokenizer (``tokenizer.json`` +
``tokenizer_config.json``, with a ChatML chat template). The weights are random,
so generated text is gibberish: tests check structure, never content.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_lm.models.qwen3 import Model, ModelArgs
from mlx_lm.utils import save_config, save_model
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

EOS = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [EOS, IM_START, IM_END]

# A ChatML template like Qwen's, reduced to what generation needs.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "The pipeline parses documents, splits them into chunks and embeds every chunk.",
    "What does the vector index store? It stores one normalised vector per chunk.",
    "Questions about a passage help to measure retrieval: recall, nDCG and MRR.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "Which enzyme unwinds DNA during replication? Helicase separates the strands.",
    "Dagster materialises assets; LanceDB keeps versioned tables of vectors.",
    "Numbers 0123456789 and punctuation: ,.;:!?()[]{}-_'\" appear in text too.",
]


def build_tokenizer(vocab_size: int = 384, append_eos: bool = False) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on a few sentences: any text encodes and decodes.

    ``append_eos`` adds a post-processor that ends every encoded text with ``<|endoftext|>``,
    as current Qwen3-Embedding tokenizers do.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    if append_eos:
        eos_id = tokenizer.token_to_id(EOS)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, eos_id)]
        )
    else:
        tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=IM_END,
        pad_token=EOS,
        chat_template=CHAT_TEMPLATE,
    )


def model_args(vocab_size: int, tie_word_embeddings: bool = True) -> ModelArgs:
    return ModelArgs(
        model_type="qwen3",
        hidden_size=64,
        num_hidden_layers=2,
        intermediate_size=128,
        num_attention_heads=4,
        rms_norm_eps=1e-6,
        vocab_size=vocab_size,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        head_dim=16,
        tie_word_embeddings=tie_word_embeddings,
        rope_theta=10000.0,
    )


def build_tiny_lm(
    folder: str | Path,
    *,
    seed: int = 0,
    tie_word_embeddings: bool = True,
    append_eos: bool = False,
    chat_template: bool = True,
) -> Path:
    """Write a random tiny Qwen3 model folder and return its path."""
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(append_eos=append_eos)
    if not chat_template:
        tokenizer.chat_template = None
    tokenizer.save_pretrained(str(path))

    vocab_size = len(tokenizer)
    args = model_args(vocab_size, tie_word_embeddings=tie_word_embeddings)
    mx.random.seed(seed)
    model = Model(args)
    mx.eval(model.parameters())
    save_model(path, model)
    config = {
        **{k: v for k, v in vars(args).items() if v is not None},
        "architectures": ["Qwen3ForCausalLM"],
        "eos_token_id": tokenizer.convert_tokens_to_ids(IM_END),
        "torch_dtype": "float32",
    }
    save_config(config, path / "config.json")
    return path


def strip_model_prefix(source: str | Path, target: str | Path) -> Path:
    """Copy a model folder with its weights named like a Qwen3-Embedding checkpoint.

    Keys lose their ``model.`` prefix (``layers.0...``, ``embed_tokens.weight``, ``norm.weight``)
    and ``lm_head`` is dropped, while ``config.json`` still says ``tie_word_embeddings: false``
    when the source was untied, as the larger Qwen3-Embedding checkpoints do.
    """
    src, dst = Path(source), Path(target)
    dst.mkdir(parents=True, exist_ok=True)
    weights: dict[str, mx.array] = {}
    for file in sorted(src.glob("model*.safetensors")):
        weights.update(mx.load(str(file)))
    renamed = {
        key.removeprefix("model."): value for key, value in weights.items() if not key.startswith("lm_head.")
    }
    mx.save_safetensors(str(dst / "model.safetensors"), renamed, metadata={"format": "mlx"})
    for file in src.iterdir():
        if file.is_file() and not file.name.startswith("model") and file.suffix != ".safetensors":
            (dst / file.name).write_bytes(file.read_bytes())
    return dst


def weight_names(folder: str | Path) -> list[str]:
    names: list[str] = []
    for file in sorted(Path(folder).glob("model*.safetensors")):
        names.extend(mx.load(str(file)).keys())
    return sorted(names)


def parameter_names(model: Model) -> list[str]:
    return sorted(name for name, _ in tree_flatten(model.parameters()))


if __name__ == "__main__":  # pragma: no cover - manual helper
    import sys

    out = build_tiny_lm(sys.argv[1] if len(sys.argv) > 1 else "tiny-qwen3")
    print(json.dumps({"path": str(out), "files": sorted(p.name for p in out.iterdir())}))
