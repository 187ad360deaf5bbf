"""Speed and memory benchmarks of uae, side by side with peer tokenizers (``uae bench``).

Modules: :mod:`~uae.bench.timing` (timing, memory, FLOPs), :mod:`~uae.bench.peers` (subjects and peers),
:mod:`~uae.bench.train_step` (training steps), :mod:`~uae.bench.report` (targets, markdown), :mod:`~uae.bench.run`
(the run), :mod:`~uae.bench.startup` (start-up latency); options in :mod:`uae.commands.bench`.
"""
