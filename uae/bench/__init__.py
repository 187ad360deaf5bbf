"""Speed and memory benchmarks of uae, side by side with peer tokenizers (``uae bench``).

Modules: :mod:`~uae.bench.timing` (timing, memory, FLOPs), :mod:`~uae.bench.peers` (subjects and peers),
:mod:`~uae.bench.train_step` (training steps), :mod:`~uae.bench.report` (targets, markdown), :mod:`~uae.bench.run`
(the run: ``BenchSettings``, ``run_benchmark(**settings)``), :mod:`~uae.bench.startup` (start-up latency);
command-line options in :mod:`uae.commands.bench`.
"""
