"""Node tags with a meaning beyond grouping, shared by pipelines (which set them) and hooks (which act on them)."""

#: nodes that train a released model: they spend privacy budget, or need an approved ``disable_dp`` request
MODEL_TRAINING_TAG = "model_training"
