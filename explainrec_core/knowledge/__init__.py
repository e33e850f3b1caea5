"""The preference knowledge base (paper III-C, eq. 4): what the training period says about groups of users, domains
and time, for users and items with little or no history of their own.

- demographic.py: P(i | u) = sum_g w_g p_g(i) over the user's demographic groups (eq. 5), weights learned;
- cross_domain.py: how a user's leaning in one genre domain goes with their leaning in another;
- temporal.py: item like-rate trends and recency, and each group's preference by release era;
- store.py: the asset on disk (a folder of parquet tables and a manifest), written atomically, and loaded back.

Nothing here may see a rating after the training period: callers pass training-period interactions only
(baselines.base.TrainingData.from_tables makes that cut), and a test checks that a test-period rating changes
nothing.
"""
