"""``qa eval``: score a question set or a public benchmark through ``qa.pipeline.ask``.

``command`` runs it; ``setup`` reads its options and places a benchmark's corpus; ``datasets``
reads question sets (our JSONL, SQuAD, BEIR); ``run`` asks every question in every compared run;
``score`` and ``metrics`` compute the figures; ``calibrate`` fits the reader's confidence and
threshold (``--calibrate``); ``report`` writes the tables, CSV and charts. Nothing is imported
here, so ``qa.eval.metrics`` stays cheap for the answer step that uses it.
"""
