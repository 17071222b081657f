"""Training: contrastive fine-tuning of the shared space and aligning an audio tower to it."""
