"""SDI's conditioning (docs/methods/sdi.md): one projected image token in a fixed prompt's slot.

Not IP-Adapter attention: the fixed prompt "a high quality photo of a class." goes through
Stable Diffusion's own text encoder once; in its final ``last_hidden_state`` (L x D) the
row of the token "class" is overwritten with the projector's output. The UNet's ordinary
cross-attention reads the result. Generation (docs/methods/sdi.md) builds the positive context
the same way from a sampled vector and uses the plain text-encoder output of
:data:`NEGATIVE_PROMPT` as the negative context; the class name is never in any prompt.
"""

from __future__ import annotations

from typing import Sequence

import torch

#: The fixed prompt whose "class" slot carries the image token.
SDI_PROMPT = "a high quality photo of a class."
#: The word whose token position is overwritten.
SLOT_WORD = "class"
#: The negative prompt of SDI's generation.
NEGATIVE_PROMPT = "monochrome, lowres, bad anatomy, worst quality, low quality"


def class_token_position(tokenizer, prompt: str = SDI_PROMPT, word: str = SLOT_WORD) -> int:
    """The index of ``word``'s token in ``prompt`` as the text encoder sees it.

    The prompt is tokenized exactly as for encoding (start token first, padded to the
    tokenizer's ``model_max_length``); ``word`` must be one token of the tokenizer's
    vocabulary and occur exactly once. For SD 1.5's CLIP tokenizer and the default prompt
    this is 7 (start, a, high, quality, photo, of, a, class), but it is always looked up,
    never assumed: another tokenizer (pocket CLIP's) may split words differently.
    """
    word_ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(word_ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(word_ids)
        raise ValueError(
            f"the slot word {word!r} is {len(word_ids)} tokens {pieces} for this tokenizer; "
            "SDI overwrites a single token, so the word must be one token of the vocabulary"
        )
    prompt_ids = prompt_token_ids(tokenizer, prompt)
    positions = [index for index, token in enumerate(prompt_ids) if token == word_ids[0]]
    if len(positions) != 1:
        found = "does not occur (truncated?)" if not positions else f"occurs {len(positions)} times"
        raise ValueError(f"the slot word {word!r} {found} in the tokenized prompt {prompt!r}")
    return positions[0]


def prompt_token_ids(tokenizer, prompt: str) -> list[int]:
    """Token ids of ``prompt`` padded to ``model_max_length``, as diffusers' ``encode_prompt`` makes them."""
    tokens = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True)
    return list(tokens["input_ids"])


@torch.no_grad()
def encode_text(tokenizer, text_encoder, texts: Sequence[str]) -> torch.Tensor:
    """The text encoder's final ``last_hidden_state`` of each text, (N, L, D).

    Tokenisation and the attention-mask rule are those of diffusers'
    ``StableDiffusionPipeline.encode_prompt`` (max-length padding, truncation, mask only
    when the encoder's config asks for one), so the context equals what the pipeline
    would compute from the same prompt.
    """
    return _encode(tokenizer, text_encoder, list(texts))


def _encode(tokenizer, text_encoder, texts: list[str]) -> torch.Tensor:
    tokens = tokenizer(
        texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    )
    device = next(text_encoder.parameters()).device
    use_mask = getattr(text_encoder.config, "use_attention_mask", False)
    mask = tokens.attention_mask.to(device) if use_mask else None
    return text_encoder(tokens.input_ids.to(device), attention_mask=mask)[0]


def encode_with_input_slot(tokenizer, text_encoder, prompt: str, tokens: torch.Tensor, position: int) -> torch.Tensor:
    """The text encoder's output of ``prompt`` with its slot's *input* embedding replaced, (N, L, D).

    The slot sits before the text encoder here (textual inversion: a learnt word
    embedding, ``tokens`` (N, D_in) with D_in the encoder's token-embedding width), where
    :func:`slot_context` on the output places SDI's projected token after it. The same
    :func:`slot_context` swaps the row: a forward hook on the encoder's token-embedding
    layer applies it to that layer's output, so the position embeddings, attention and
    final layer norm run over the new word as over any other, and gradients reach
    ``tokens`` through the frozen encoder. Without a gradient context the result equals
    :func:`encode_text` of a prompt whose slot word has the embedding ``tokens[i]``.
    """
    embedding = text_encoder.get_input_embeddings()
    handle = embedding.register_forward_hook(lambda module, args, output: slot_context(output, tokens, position))
    try:
        return _encode(tokenizer, text_encoder, [prompt] * len(tokens))
    finally:
        handle.remove()


def slot_context(context: torch.Tensor, tokens: torch.Tensor, position: int) -> torch.Tensor:
    """The prompt context with its slot replaced by one token per sample.

    ``context`` is (1, L, D) or (N, L, D), ``tokens`` (N, D); returns (N, L, D) with
    ``out[i, position] = tokens[i]`` and every other row equal to ``context``. Built by
    concatenation, so gradients flow to ``tokens`` (projector training) and never into the
    frozen context.
    """
    if tokens.ndim != 2 or tokens.shape[-1] != context.shape[-1]:
        raise ValueError(
            f"tokens must be (N, {context.shape[-1]}) to fill a slot of this context, got {tuple(tokens.shape)}; "
            "the projector's output size must equal the UNet's cross_attention_dim"
        )
    if not 0 <= position < context.shape[1]:
        raise ValueError(f"slot position {position} is outside the context's {context.shape[1]} tokens")
    context = context.to(dtype=tokens.dtype, device=tokens.device).expand(len(tokens), -1, -1)
    return torch.cat([context[:, :position], tokens[:, None, :], context[:, position + 1 :]], dim=1)
