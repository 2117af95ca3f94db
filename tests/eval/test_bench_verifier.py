"""The near-copy benchmark's variants on a real passage of the sample manual: the faithful ones pass the check, the
changed ones are caught."""

import random

from assistant.citations import _tokens, substitution
from eval.bench.verifier import cases
from ingest.chunking import sentence_spans

CLAUSES = ("4.4 Business email of all staff is retained for 2 years from the date it was sent or received, after "
           "which it is deleted automatically from the email archive. 4.5 Recordings of telephone calls and "
           "electronic communications relating to investment services are retained for 5 years from the date of "
           "the recording, in line with the recording requirements of the FCA Handbook.")


def test_faithful_variants_pass_and_substituted_ones_are_caught():
    sentences = [CLAUSES[s:e] for s, e in sentence_spans(CLAUSES)]
    variants = cases(CLAUSES, random.Random(0))
    assert set(variants) == {"verbatim", "omission", "framing", "other sentence", "word substituted",
                             "number substituted"}
    for kind, claim in variants.items():
        found = substitution(claim, sentences, set(_tokens(CLAUSES)))
        assert (found is not None) == kind.endswith("substituted"), (kind, claim, found)
