"""FOMO26 tasks 6 and 7: the organisers' linear probe on `<ptid>.npy` embeddings, and their fairness score.

A reproduction, not an approximation: fomo-lp (github.com/fomo26/fomo-lp @ f915d5a, `pipeline/lp_fomo.py`,
`pipeline/fairness_report.py`) trains asparagus' `LinearProbeModule` (Sllambias/asparagus @ 338450b) under
Lightning and scores with fomo-metrics (fomo26/fomo-metrics); none of them installs from a package registry,
so each step is re-expressed here from that source and checked against a transcription in
tests/test_fomo26_probe.py. One file per step: `split` (their stratified split), `linear_probe` (the
learning-rate sweep and its selection), `selection_auroc` (the validation AUROC that selects),
`scores` (fomo-metrics' one-vs-rest AUROC and F1, worst case for a missing embedding), `fairness`
(max disparity per variable, 1 - gap averaged), `protocol` (files in, report out).
"""
