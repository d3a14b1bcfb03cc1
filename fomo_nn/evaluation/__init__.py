"""Scoring and ranking: FOMO25 metrics, fomo_nn_evaluate summaries, rank-then-aggregate leaderboards.

Needs only numpy, scipy, nibabel, matplotlib (and SimpleITK for non-NIfTI masks): it scores files,
whoever wrote them. Entry points: scoring.evaluate (one model, one task -> EvaluationSummary) and
report.make_report (several models' summaries -> leaderboard, bootstrap ranks, tests, tiers, plots).
"""
