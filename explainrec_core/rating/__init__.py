"""The rating-prediction task (paper eq. 10): reference regression models and their evaluation."""
