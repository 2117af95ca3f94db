"""The ingestion benchmark's ceiling: the linear-layer cost per token it divides by must be the real model's."""

import torch
from transformers import AutoModel

from eval.bench.ingest import gemm_ceiling, linear_flops_per_token
from ingest.embedding import resolve_embedding_model
from ingest.settings import DEFAULT_EMBEDDING


def test_linear_flops_per_token_counts_the_encoders_linear_weights():
    folder = resolve_embedding_model(DEFAULT_EMBEDDING)
    model = AutoModel.from_pretrained(folder)
    weights = sum(m.weight.numel() for m in model.encoder.modules() if isinstance(m, torch.nn.Linear))
    assert linear_flops_per_token(folder) == 2 * weights  # one multiply and one add per weight per token


def test_ceiling_is_none_for_a_folder_without_a_bert_config(tmp_path):
    assert linear_flops_per_token(str(tmp_path)) is None
    assert gemm_ceiling(str(tmp_path), "bf16") is None


def test_gemm_ceiling_measures_a_positive_throughput_in_the_asked_precision():
    ceiling = gemm_ceiling(resolve_embedding_model(DEFAULT_EMBEDDING), "fp32", batch_tokens=64, repeats=1)
    assert ceiling["precision"] == "fp32" and ceiling["threads"] == torch.get_num_threads()
    assert ceiling["gflops"] > 0
