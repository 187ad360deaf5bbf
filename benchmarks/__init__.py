"""Speed and memory benchmarks of uae, side by side with peer tokenizers (``python -m benchmarks.run``)."""
