"""Fine-tuning stage: an image folder -> RUN/train/ (trainer.train). Data and splits, the
feature cache of the frozen part, strategies, the epoch loop, metrics and plots."""
