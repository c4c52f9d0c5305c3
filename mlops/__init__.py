"""mlops: model registry, retraining, verification, deployment and rollback."""
