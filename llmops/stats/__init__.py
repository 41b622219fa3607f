"""Statistics shared by quality monitoring and experiments: pure math over numbers, no IO.

`proportions` (Wilson intervals, the two-proportion z test), `drift` (PSI, KS, Wasserstein,
Jensen-Shannon, chi-square, embedding distances, Evidently's default choice), `multiple`
(Benjamini-Hochberg, Holm) and `fairness` (disparity ratios with intervals).
"""
