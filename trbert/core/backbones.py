"""Where the stock pieces of each backbone are: embeddings, layers, one layer on packed tokens; one small class per
host model (BERT, DistilBERT) that the models of :mod:`.heads` mix in, so :mod:`.encoder` never names a transformers
attribute; and the attention [CLS] pays every token in a layer (the attention top-k baseline).
"""

from __future__ import annotations

import torch
from transformers import BertConfig, DistilBertConfig

from .packed import row_chunks

# the packed FFN runs in FFN_PARTS slices of rows (at least FFN_MIN_ROWS): its [rows, 4d] intermediates then weigh less
# than attention's q/k/v, so a layer's peak is attention's, not the FFN's
FFN_PARTS, FFN_MIN_ROWS = 4, 128


class TRBertConfig(BertConfig):
    """A TR-BERT checkpoint on BERT: ``model_type: trbert`` in its config.json names our classes to the Auto API."""

    model_type = "trbert"


class TRDistilBertConfig(DistilBertConfig):
    """The config of a TR-BERT checkpoint on DistilBERT (``model_type: trdistilbert``)."""

    model_type = "trdistilbert"


class Backbone:
    """What both backbones share, given ``_query_key(layer)``."""

    def _embed_module(self):
        return self.base_model.embeddings

    def _cls_attention(self, layer, x, alive) -> torch.Tensor:
        """Attention ``[B, T]`` [CLS] pays each position in ``layer`` on its input ``x [B, T, d]``, mean over heads."""
        query, key, heads = self._query_key(layer)
        q = query(x[:, 0]).view(x.shape[0], heads, -1)
        k = key(x).view(*x.shape[:2], heads, -1)
        scores = torch.einsum("bhd,bthd->bht", q, k).float() / q.shape[-1] ** 0.5
        return scores.masked_fill(~alive[:, None, :], float("-inf")).softmax(-1).mean(1)

    def _packed_cls_attention(self, layer, x, packing) -> torch.Tensor:
        """:meth:`_cls_attention` on packed tokens ``x [N, d]``: a softmax within each example. ``[N]``."""
        query, key, heads = self._query_key(layer)
        b = packing.counts.shape[0]
        q = query(x[packing.starts]).view(b, heads, -1)[packing.row]
        scores = (q * key(x).view(x.shape[0], heads, -1)).sum(-1).float() / q.shape[-1] ** 0.5  # [N, heads]
        rows = packing.row[:, None].expand_as(scores)
        top = scores.new_full((b, heads), float("-inf")).scatter_reduce(0, rows, scores, "amax")
        weights = (scores - top[packing.row]).exp()
        return (weights / weights.new_zeros(b, heads).index_add(0, packing.row, weights)[packing.row]).mean(1)


class BertBackbone(Backbone):
    """Where the stock BERT pieces are: embeddings, layers, and one layer on packed tokens."""

    config_class = TRBertConfig

    def _embed(self, input_ids, token_type_ids, position_ids=None):
        return self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids)

    def _layers(self):
        return self.bert.encoder.layer

    @staticmethod
    def _query_key(layer):
        a = layer.attention.self
        return a.query, a.key, a.num_attention_heads

    def _packed_layer(self, layer, x, packing, attend):
        """Stock ``BertLayer`` math on packed tokens ``[N, d]`` (its own submodules, in order)."""
        a = layer.attention.self
        shape = (x.shape[0], a.num_attention_heads, a.attention_head_size)
        context = attend((p(x).view(shape) for p in (a.query, a.key, a.value)), packing)
        h = layer.attention.output(context, x)
        del context
        return row_chunks(h, lambda part: layer.output(layer.intermediate(part), part), FFN_PARTS, FFN_MIN_ROWS)


class DistilBertBackbone(Backbone):
    config_class = TRDistilBertConfig

    def _embed(self, input_ids, token_type_ids, position_ids=None):
        return self.distilbert.embeddings(input_ids, position_ids=position_ids)

    def _layers(self):
        return self.distilbert.transformer.layer

    @staticmethod
    def _query_key(layer):
        return layer.attention.q_lin, layer.attention.k_lin, layer.attention.n_heads

    def _packed_layer(self, layer, x, packing, attend):
        """Stock ``TransformerBlock`` math on packed tokens ``[N, d]``."""
        a = layer.attention
        shape = (x.shape[0], a.n_heads, a.attention_head_size)
        context = attend((p(x).view(shape) for p in (a.q_lin, a.k_lin, a.v_lin)), packing)
        h = layer.sa_layer_norm(a.out_lin(context) + x)
        del context
        return row_chunks(h, lambda part: layer.output_layer_norm(layer.ffn(part) + part), FFN_PARTS, FFN_MIN_ROWS)
